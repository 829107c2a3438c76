"""Trained runs behind HTTP; `python -m jaxgenre.serve` (jaxgenre/tools/serve.py) starts it.

  app        the FastAPI application: endpoints, errors as 4xx with a message, access logs
  service    the models, their micro-batchers and the warm-up that readiness waits for
  batching   one worker thread per model running queued requests in shared jitted batches
  metrics    the Prometheus metrics (names shared with deploy/grafana/jaxgenre.json)
  static/    the web page at /
"""
