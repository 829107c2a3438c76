"""Multi-host training: 2 processes x 2 devices (`jax.distributed` on localhost) against 1 process
x 4 devices, on the same global batches, for each task's train step. A module of its own so that
test workers share these subprocess-heavy tests with the long GAN and training modules."""
import numpy as np
import pytest

from tests import train_helpers as th

pytestmark = pytest.mark.slow  # several processes: the slow tier


@pytest.mark.parametrize("task, tolerance", [
    ("classifier", 1e-5),  # float32 reductions in another order
    ("stargan", 1e-4),  # two optimizers and R1's second derivatives: 3 steps
])
def test_two_processes_match_one_process(tmp_path, task, tolerance):
    two, one = th.two_processes_and_one(tmp_path, task)
    assert set(two.files) == set(one.files) and len(one.files) > 10
    assert max(float(np.abs(two[k] - one[k]).max()) for k in one.files) <= tolerance
