"""Multi-host training: 2 processes x 2 devices (`jax.distributed` on localhost) against 1 process
x 4 devices, on the same global batches, for each task's train step. A module of its own so that
test workers share these subprocess-heavy tests with the long GAN and training modules."""
import pathlib
import signal
import time

import numpy as np
import pytest

from jaxgenre.run import preemption
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


def test_sigterm_to_one_of_two_processes_saves_the_same_step_on_both(tiny_fma, tmp_path):
    """A notice reaching one host only (as a preempted VM of a pod): both processes agree on
    the step, save it together, exit 143, and the same command resumes from it."""
    workdir = str(tmp_path / "run")
    extra = {"log_every_steps": 1, "checkpoint_every_steps": 1000, "eval_every_steps": 1000,
             "total_steps": 20}

    def launch(pid, name, port):
        log = open(tmp_path / f"{name}{pid}.log", "w")  # noqa: SIM115 - closed below
        proc = th.cli(workdir, tiny_fma[0], devices=2, wait=False, log=log, extra_args=[
            f"--coordinator_address=localhost:{port}", "--num_processes=2",
            f"--process_id={pid}"], **extra)
        return proc, log

    def finish(runs) -> list[str]:
        outs = []
        for proc, log in runs:
            proc.wait(timeout=300)
            log.close()
            outs.append(pathlib.Path(log.name).read_text())
        return outs

    port = th.free_port()
    runs = [launch(pid, "first", port) for pid in range(2)]
    started = time.time()
    while "step 3/20" not in (tmp_path / "first0.log").read_text():
        assert time.time() - started < 300 and runs[0][0].poll() is None
        time.sleep(0.2)
    runs[1][0].send_signal(signal.SIGTERM)  # process 1 only
    outs = finish(runs)
    saved = th.saved_steps(workdir)
    assert [proc.returncode for proc, _ in runs] == [preemption.EXIT_CODE] * 2, outs
    assert len(saved) == 1 and 3 <= saved[0] < 20, (saved, outs)
    for out in outs:
        assert f"SIGTERM: saved step {saved[0]}" in out, out[-3000:]
    port = th.free_port()  # a coordinator of its own: the first one's port may linger
    runs = [launch(pid, "second", port) for pid in range(2)]
    for (proc, _), out in zip(runs, finish(runs), strict=True):
        assert proc.returncode == 0 and f"Resuming from step {saved[0]}" in out, out[-3000:]
    assert th.saved_steps(workdir)[-1] == 20
