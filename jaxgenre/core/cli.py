"""What every command-line entry point shares: process settings made before TensorFlow and JAX
are imported, and a console that shows our lines only.

By default a run prints its start-up summary, the progress line, evaluation results and
checkpoint saves, one line each, and errors; the libraries' INFO and WARNING chatter (Orbax's
per-checkpoint lines, TensorFlow and XLA start-up, TFDS deprecations) is hidden. `--verbosity=1`
(absl's flag) shows everything.

  from jaxgenre.core import cli
  cli.prepare_process(relaunch=__name__ == "__main__")  # first, before TensorFlow or JAX
  ...
  def main(argv):
      cli.quiet_logs()
"""
import logging as py_logging
import os

from jaxgenre.core import host_memory

_OURS = (f"{os.sep}jaxgenre{os.sep}", f"{os.sep}tfds_fma{os.sep}")
# Native (C++) loggers read these when TensorFlow, XLA and libtpu start: errors only.
# TF_ENABLE_ONEDNN_OPTS=0: TensorFlow only feeds data here (no TF matmuls or convolutions to
# speed up), and its oneDNN start-up notice is printed whatever the log level.
_NATIVE_QUIET = {"TF_CPP_MIN_LOG_LEVEL": "2", "TPU_MIN_LOG_LEVEL": "2",
                 "TPU_STDERR_LOG_LEVEL": "2", "GRPC_VERBOSITY": "ERROR",
                 "TF_ENABLE_ONEDNN_OPTS": "0"}


def prepare_process(relaunch: bool = False) -> None:
    """Host memory settings (see host_memory; `relaunch` only where the caller is the program
    being run) and quiet native loggers; a user's own environment values win. Must run before
    TensorFlow or JAX is imported."""
    host_memory.configure(relaunch)
    for key, value in _NATIVE_QUIET.items():
        os.environ.setdefault(key, value)


def quiet_logs() -> None:
    """Hides other libraries' log records below ERROR unless absl's --verbosity is 1 or more.
    Call at the start of `main`, after flags are parsed."""
    from absl import logging
    if logging.get_verbosity() >= 1:
        return
    py_logging.captureWarnings(True)  # Python warnings become records the filter sees
    logging.get_absl_handler().addFilter(_OnlyOurs())
    py_logging.getLogger("tensorflow").setLevel(py_logging.ERROR)  # it has a handler of its own


class _OnlyOurs(py_logging.Filter):
    def filter(self, record: py_logging.LogRecord) -> bool:
        return record.levelno >= py_logging.ERROR or any(p in record.pathname for p in _OURS)
