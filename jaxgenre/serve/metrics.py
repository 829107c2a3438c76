"""The service's Prometheus metrics, in a registry of their own (one per service, so that tests
can start several in one process). deploy/grafana/jaxgenre.json is built on exactly these names
(tests/test_deploy.py checks it against `NAMES`)."""
import dataclasses

import prometheus_client as prom

# Latency buckets (s): a classify of a short clip is tens of ms, a long conversion seconds.
LATENCY_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64)
REALTIME_BUCKETS = (0.5, 1, 2, 5, 10, 20, 50, 100, 200)


@dataclasses.dataclass
class Metrics:
    """Every metric the service exports. Labels: endpoint (classify, convert, genres, info,
    page, metrics, healthz, readyz, docs, other), status (the HTTP code), model (classifier or
    generator), role (the same, on model_info)."""
    registry: prom.CollectorRegistry
    requests: prom.Counter
    request_seconds: prom.Histogram
    batch_size: prom.Histogram
    batch_seconds: prom.Histogram
    queue_depth: prom.Gauge
    audio_seconds: prom.Counter
    realtime_factor: prom.Histogram
    model_info: prom.Gauge
    ready: prom.Gauge


def create() -> Metrics:
    # No `_created` series: a timestamp per label set that no dashboard reads.
    prom.disable_created_metrics()
    r = prom.CollectorRegistry()
    return Metrics(
        registry=r,
        requests=prom.Counter("jaxgenre_requests", "HTTP requests answered, by endpoint and "
                              "status code.", ["endpoint", "status"], registry=r),
        request_seconds=prom.Histogram("jaxgenre_request_seconds", "Time from a request's "
                                       "arrival to its response, by endpoint.", ["endpoint"],
                                       buckets=LATENCY_BUCKETS, registry=r),
        batch_size=prom.Histogram("jaxgenre_batch_size", "Rows of real audio per jitted batch "
                                  "(windows for the classifier, clips for the generator).",
                                  ["model"], buckets=BATCH_BUCKETS, registry=r),
        batch_seconds=prom.Histogram("jaxgenre_batch_seconds", "Compute time per batch.",
                                     ["model"], buckets=LATENCY_BUCKETS, registry=r),
        queue_depth=prom.Gauge("jaxgenre_queue_depth", "Requests waiting for a batch.",
                               ["model"], registry=r),
        audio_seconds=prom.Counter("jaxgenre_audio_seconds", "Seconds of audio processed, by "
                                   "endpoint.", ["endpoint"], registry=r),
        realtime_factor=prom.Histogram("jaxgenre_conversion_realtime_factor", "Seconds of audio "
                                       "converted per second of conversion, per request.",
                                       buckets=REALTIME_BUCKETS, registry=r),
        model_info=prom.Gauge("jaxgenre_model_info", "The runs served (value 1).",
                              ["role", "workdir", "step", "dataset", "sample_rate"], registry=r),
        ready=prom.Gauge("jaxgenre_ready", "1 once the warm-up compiled every batch shape.",
                         registry=r),
    )


def names(metrics: Metrics) -> set[str]:
    """The names as Prometheus exposes them (counters with `_total`), without the histogram
    series suffixes."""
    return {m.name + ("_total" if m.type == "counter" else "")
            for m in metrics.registry.collect()}
