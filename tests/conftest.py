"""Test set-up: 8 fake CPU devices, quiet TensorFlow, and jaxgenre's malloc for the processes
started from here (see below)."""
import os

os.environ.setdefault("XLA_FLAGS", "--xla_force_host_platform_device_count=8")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")  # TensorFlow stays off any accelerator

import pytest

from jaxgenre.core import host_memory

# pytest-xdist's workers and the CLI tests' subprocesses start with the malloc jaxgenre.train
# uses (host_memory); this process keeps the one it started with.
os.environ.update(host_memory.for_new_processes())


@pytest.fixture(scope="session")
def tiny_fma(tmp_path_factory):
    """`fma/small` built from a tiny synthetic release: 8 genres x 8 clips of 6 s.

    Returns (data_dir, manual_dir). Splits: 32 train, 16 validation, 16 test (by artist).
    """
    from jaxgenre.data import input_pipeline
    from tfds_fma.fma import demo
    root = tmp_path_factory.mktemp("tiny_fma")
    manual, data = root / "manual", root / "data"
    demo.generate(str(manual), tracks_per_genre=8, tracks_per_artist=2, seconds=6.0)
    input_pipeline.load_builder("fma/small", str(data), str(manual))
    return str(data), str(manual)


@pytest.fixture(scope="session")
def tiny_classifier(tiny_fma, tmp_path_factory):
    """A trained run of the tiny mfcc_cnn classifier (1 s crops, 4 steps, one checkpoint with an
    evaluation), for tests that need any classifier run: how well it hears genres does not
    matter. Made once per test worker. Returns its workdir."""
    from jaxgenre import train
    from tests import train_helpers as th
    workdir = str(tmp_path_factory.mktemp("tiny_classifier"))
    train.train_and_evaluate(th.config(tiny_fma[0], total_steps=4, checkpoint_every_steps=4,
                                       eval_every_steps=4), workdir)
    return workdir


@pytest.fixture(scope="session")
def classifiers(tiny_fma, tmp_path_factory):
    """Two small classifier runs with the style-transfer tests' frontend: (for the GAN's loss
    and scores, a judge). Made once per test worker."""
    from jaxgenre import train
    from tests import train_helpers as th
    dirs = []
    for seed in (0, 1):
        workdir = str(tmp_path_factory.mktemp(f"classifier{seed}"))
        train.train_and_evaluate(th.config(tiny_fma[0], seed=seed, total_steps=4,
                                           checkpoint_every_steps=4, eval_every_steps=4), workdir)
        dirs.append(workdir)
    return dirs
