"""`python -m jaxgenre.serve`: trained runs behind HTTP (see __main__ for the command).

  app        the FastAPI application: endpoints, errors as 4xx with a message, access logs
  service    the models, their micro-batchers and the warm-up that readiness waits for
  batching   one worker thread per model running queued requests in shared jitted batches
  metrics    the Prometheus metrics (names shared with deploy/grafana/jaxgenre.json)
  static/    the web page at /
"""
