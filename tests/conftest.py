"""Test set-up: 8 fake CPU devices and malloc that keeps freed memory (before JAX starts),
quiet TensorFlow."""
import os

os.environ.setdefault("XLA_FLAGS", "--xla_force_host_platform_device_count=8")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")  # TensorFlow stays off any accelerator

import pytest

from jaxgenre import host_memory

host_memory.keep_freed_memory()  # as jaxgenre.train does


@pytest.fixture(scope="session")
def tiny_fma(tmp_path_factory):
    """`fma/small` built from a tiny synthetic release: 8 genres x 8 clips of 6 s.

    Returns (data_dir, manual_dir). Splits: 32 train, 16 validation, 16 test (by artist).
    """
    from jaxgenre import input_pipeline
    from tfds_fma.fma import demo
    root = tmp_path_factory.mktemp("tiny_fma")
    manual, data = root / "manual", root / "data"
    demo.generate(str(manual), tracks_per_genre=8, tracks_per_artist=2, seconds=6.0)
    input_pipeline.load_builder("fma/small", str(data), str(manual))
    return str(data), str(manual)
