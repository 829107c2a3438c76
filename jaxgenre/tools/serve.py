r"""Serves trained runs over HTTP: classify and convert uploads, a web page, Prometheus metrics.

  python -m jaxgenre.serve --classifier runs/demo [--generator runs/stargan_demo]
      [--host 127.0.0.1] [--port 8000] [--max_seconds 600] [--max_convert_seconds 60]
      [--queue_size 64] [--max_batch_requests 16] [--max_wait_ms 5]

Needs the `serve` extra (pip install -e '.[serve]'). The endpoints are listed in
jaxgenre/serve/app.py (and at /docs once it runs); docs/serving.md has the whole story. The
server answers /healthz at once and /readyz once the warm-up has compiled every batch shape a
request can meet; requests before that get 503 with Retry-After. A warm-up that fails stops the
server (exit 1). SIGTERM or Ctrl-C stops it after the requests in flight.
"""
from jaxgenre.core import cli

# First of all: before TensorFlow and JAX start their threads and loggers.
cli.prepare_process(relaunch=__name__ == "__main__")

import sys
import threading

from absl import app, flags, logging

from jaxgenre.serve import service as service_lib

_CLASSIFIER = flags.DEFINE_string("classifier", None, "A genre classifier run's --workdir.",
                                  required=True)
_GENERATOR = flags.DEFINE_string("generator", None, "A style-transfer run's --workdir (same "
                                 "genres); without it the server only classifies.")
_CHECKPOINT = flags.DEFINE_string("checkpoint", "best", "The classifier's checkpoint: 'best', "
                                  "'latest' or a step number.")
_HOST = flags.DEFINE_string("host", "127.0.0.1", "Address to listen on (0.0.0.0 in a container).")
_PORT = cli.integer_flag("port", 8000, "Port to listen on.", minimum=1, maximum=65535)
_DEFAULTS = service_lib.Settings()
_MAX_SECONDS = cli.float_flag("max_seconds", _DEFAULTS.max_seconds, "Longest audio a classify "
                              "request may hold (413 beyond).", above=0)
_MAX_CONVERT = cli.float_flag("max_convert_seconds", _DEFAULTS.max_convert_seconds, "Longest "
                              "audio a convert request may hold (413 beyond); every length up "
                              "to it is compiled at start.", above=0)
_MAX_UPLOAD = cli.float_flag("max_upload_mb", _DEFAULTS.max_upload_mb, "Largest request body "
                             "in MiB (413 beyond, before it is read).", above=0)
_QUEUE = cli.integer_flag("queue_size", _DEFAULTS.queue_size, "Requests waiting per model; "
                          "503 with Retry-After beyond.", minimum=1)
_BATCH = cli.integer_flag("max_batch_requests", _DEFAULTS.max_batch_requests, "Requests sharing "
                          "one batch (1 turns micro-batching off).", minimum=1)
_WAIT = cli.float_flag("max_wait_ms", _DEFAULTS.max_wait_ms, "How long a batch waits for more "
                       "requests once one is there (ms).", minimum=0.0)


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
    cli.quiet_logs()
    try:
        import uvicorn

        from jaxgenre.serve import app as app_lib
    except ImportError as e:
        raise app.UsageError(f"{e.name} is missing: install the serve extra "
                             "(pip install -e '.[serve]').") from None
    settings = service_lib.Settings(
        max_seconds=_MAX_SECONDS.value, max_convert_seconds=_MAX_CONVERT.value,
        max_upload_mb=_MAX_UPLOAD.value, queue_size=_QUEUE.value,
        max_batch_requests=_BATCH.value, max_wait_ms=_WAIT.value)
    service = service_lib.Service.from_runs(_CLASSIFIER.value, _GENERATOR.value, settings,
                                            _CHECKPOINT.value)
    print(f"serving {_CLASSIFIER.value}" + (f" and {_GENERATOR.value}" if _GENERATOR.value else "")
          + f" on http://{_HOST.value}:{_PORT.value}/ (ready once warmed up: /readyz)",
          file=sys.stderr, flush=True)

    server = uvicorn.Server(uvicorn.Config(
        app_lib.create_app(service), host=_HOST.value, port=_PORT.value,
        access_log=False,  # app.Observe writes one JSON line per request instead
        log_level="info" if logging.get_verbosity() >= 1 else "warning"))
    failed = []

    def warm_up():
        try:
            service.warm_up()
        except Exception as e:  # noqa: BLE001 - a server that can never be ready must end
            failed.append(f"{type(e).__name__}: {e}")
            server.should_exit = True
            return
        print("ready: every batch shape is compiled", file=sys.stderr, flush=True)
    threading.Thread(target=warm_up, name="warm-up", daemon=True).start()
    try:
        server.run()
    finally:
        service.close()
    if failed:
        raise RuntimeError(f"the warm-up failed ({failed[0]}); the server stopped.")


def entry_point() -> None:
    """Parses the flags and runs `main` (the `python -m` entry point). SIGTERM is uvicorn's: it
    finishes the requests in flight, then ends by the signal."""
    cli.run(main, sigterm_unwinds=False)


if __name__ == "__main__":
    entry_point()
