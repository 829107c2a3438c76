"""What every command-line entry point shares: process settings made before TensorFlow and JAX
are imported, and a console that shows our lines only.

By default a run prints its start-up summary, the progress line, evaluation results and
checkpoint saves, one line each, and errors; the libraries' INFO and WARNING chatter (Orbax's
per-checkpoint lines, TensorFlow and XLA start-up, TFDS deprecations) is hidden. `--verbosity=1`
(absl's flag) shows everything.

A user's mistake (`errors.UserError`, and in the tools the ValueError or OSError our checks
and the file system raise) ends the program with one line, `error: <what and the fix>`, exit
status 1; `--verbosity=1` shows its traceback instead.

  from jaxgenre.core import cli
  cli.prepare_process(relaunch=__name__ == "__main__")  # first, before TensorFlow or JAX
  ...
  def main(argv):
      cli.quiet_logs()
  ...
  cli.run(main)  # in place of absl's app.run

Every numeric flag of every command line is defined here, with its bounds (`integer_flag`,
`float_flag`), so a value that cannot be right (a negative window, -1 iterations) is refused
while the flags are parsed, in absl's two lines, before any work.
"""
import functools
import logging as py_logging
import math
import os
import signal
import sys
import threading

from jaxgenre.core import errors, host_memory

# What a command line reports as one line rather than a traceback: our own checks raise
# UserError (or ValueError, for the config checks shared with library callers); OSError is a
# path that is missing, unwritable or a directory, and its message names the path.
USER_ERRORS = (errors.UserError, ValueError, OSError)

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
    # A checkpoint that fails to restore (which we report, naming the step) leaves Orbax's other
    # reads of it in flight; they end after its event loop closed, and asyncio and Python print
    # a traceback for each of them, hundreds of lines.
    py_logging.getLogger("asyncio").setLevel(py_logging.CRITICAL)
    sys.unraisablehook = functools.partial(_unless_closed_loop, sys.__unraisablehook__)


def integer_flag(name: str, default: int | None, help: str, minimum: int,
                 maximum: int | None = None):
    """absl's DEFINE_integer, refusing values below `minimum` or above `maximum` (None, the
    default when `default` is None, stays allowed: it means "not given")."""
    from absl import flags
    holder = flags.DEFINE_integer(name, default, help)
    _bound(name, lambda v: v >= minimum and (maximum is None or v <= maximum),
           f"an integer from {minimum}" + (f" to {maximum}" if maximum is not None else " up"))
    return holder


def float_flag(name: str, default: float | None, help: str, above: float | None = None,
               minimum: float | None = None, maximum: float | None = None):
    """absl's DEFINE_float, refusing values not greater than `above`, below `minimum` or above
    `maximum`, and NaN or infinity (None stays allowed, as in `integer_flag`)."""
    from absl import flags
    holder = flags.DEFINE_float(name, default, help)
    parts = ([f"greater than {above:g}"] if above is not None else []) + (
        [f"at least {minimum:g}"] if minimum is not None else []) + (
        [f"at most {maximum:g}"] if maximum is not None else [])
    _bound(name, lambda v: (math.isfinite(v) and (above is None or v > above)
                            and (minimum is None or v >= minimum)
                            and (maximum is None or v <= maximum)),
           "a finite number" + (" " + " and ".join(parts) if parts else ""))
    return holder


def _bound(name: str, ok, what: str) -> None:
    from absl import flags
    flags.register_validator(name, lambda v: v is None or ok(v),
                             message=f"--{name} must be {what}.")


def run(main, flags_parser=None, sigterm_unwinds: bool = True,
        user_errors: tuple[type[BaseException], ...] = USER_ERRORS) -> None:
    """absl's `app.run(main)`, with a user's mistake (`user_errors`, absl's UsageError) printed
    as `error: <message>` on one line and exit status 1; with --verbosity=1 the exception
    propagates as usual (traceback, or absl's usage text). Training passes
    sigterm_unwinds=False (it saves a checkpoint on SIGTERM: `run/preemption`) and
    user_errors=(errors.UserError,): a ValueError hours into a run keeps its traceback."""
    from absl import app
    kwargs = {} if flags_parser is None else {"flags_parser": flags_parser}
    app.run(functools.partial(call_main, main, sigterm_unwinds=sigterm_unwinds,
                              user_errors=user_errors), **kwargs)


def call_main(main, argv, sigterm_unwinds: bool = True,
              user_errors: tuple[type[BaseException], ...] = USER_ERRORS):
    """`main(argv)` as `run` calls it once the flags are parsed (tests call it to run several
    mains in one process): a user's mistake exits with one line (an error of ours says the
    fix; another one adds how to see its traceback), and with `sigterm_unwinds` SIGTERM raises
    SystemExit(143) (exit status 143, as when killed by it). Output piped into a program that
    stops reading (`| head`) ends quietly."""
    from absl import app, logging
    if sigterm_unwinds and signal.getsignal(signal.SIGTERM) is signal.SIG_DFL:
        # SIGTERM (a scheduler, `kill`) unwinds like Ctrl-C, so output files are finished or
        # removed (`outputs`) rather than left half-written.
        signal.signal(signal.SIGTERM, _exit_on_sigterm)
    _sigterm_received.clear()
    try:
        return _ended_by_sigterm_if_it_came(main, argv)
    except BrokenPipeError:
        # Python's own advice: point stdout at /dev/null so that its flush at exit is quiet.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        sys.exit(1)
    except (app.UsageError, *user_errors) as e:
        if logging.get_verbosity() >= 1:
            raise
        hint = "" if isinstance(e, (errors.UserError, app.UsageError)) else (
            " (--verbosity=1 shows where it came from)")
        sys.stdout.flush()
        sys.exit("error: " + " ".join(str(e).split()) + hint)


_sigterm_received = threading.Event()


def _exit_on_sigterm(signum, frame):
    _sigterm_received.set()
    raise SystemExit(128 + signum)


def _ended_by_sigterm_if_it_came(main, argv):
    """`main(argv)`; once SIGTERM has come, whatever ends it ends it as SIGTERM (exit 143).

    The handler's SystemExit is raised wherever the main thread happens to be, which can be
    inside a library's lock handling (tqdm's write); that library's cleanup then fails
    (RuntimeError: cannot release un-acquired lock) and replaces the SystemExit. The run was still
    stopped by the signal: its outputs were unwound all the same, so it exits as such."""
    try:
        return main(argv)
    except BaseException as e:
        if _sigterm_received.is_set() and not isinstance(e, SystemExit):
            print(f"stopped by SIGTERM ({type(e).__name__} while unwinding: {e})", file=sys.stderr)
            raise SystemExit(128 + signal.SIGTERM) from e
        raise


def _unless_closed_loop(default_hook, unraisable) -> None:
    """sys.unraisablehook that drops 'Event loop is closed' (see quiet_logs) and passes
    everything else to `default_hook`."""
    e = unraisable.exc_value
    if not (isinstance(e, RuntimeError) and str(e) == "Event loop is closed"):
        default_hook(unraisable)


class _OnlyOurs(py_logging.Filter):
    def filter(self, record: py_logging.LogRecord) -> bool:
        return record.levelno >= py_logging.ERROR or any(p in record.pathname for p in _OURS)
