"""The models behind the HTTP service: a classifier, optionally a generator, each fed by a
`MicroBatcher`, warmed up so that no request pays a compilation.

Shapes the service compiles, once, at warm-up:
- classifier: windows [B, window] for B in `Settings.classify_batch_sizes` (rounded up to the
  device count); a request's windows and its neighbours' share them (`api.Classifier`).
- generator: clips [K, L] for K in `Settings.convert_batch_sizes` and L in `buckets`: the
  conversion window times 1, 2, 4, ... up to `max_convert_seconds`. A clip is mirrored at its end
  up to its bucket's length and cut back after (beyond the first bucket, at most 2x the work of
  its own length; without buckets, a compile per request length), and clips of one bucket are
  converted together.
"""
import dataclasses
import threading
import time

import numpy as np

from jaxgenre import api
from jaxgenre.core import errors
from jaxgenre.data import audio_files
from jaxgenre.serve import batching
from jaxgenre.serve import metrics as metrics_lib


@dataclasses.dataclass(frozen=True)
class Settings:
    """What an operator tunes (all but the batch sizes are flags of `python -m jaxgenre.serve`)."""
    max_seconds: float = 600.0  # longest audio a classify request may hold (413 beyond)
    max_convert_seconds: float = 60.0  # longest audio a convert request may hold (413 beyond)
    max_upload_mb: float = 100.0  # largest request body (413 beyond, before it is read)
    queue_size: int = 64  # requests waiting per model; 503 with Retry-After beyond
    max_batch_requests: int = 16  # requests sharing one batch; 1 turns batching off
    max_wait_ms: float = 5.0  # how long a batch waits for more requests once one is there
    decoders: int = 4  # uploads decoded at once (each holds up to max_seconds of audio)
    classify_batch_sizes: tuple[int, ...] = (1, 4, 16)
    convert_batch_sizes: tuple[int, ...] = (1, 4)


@dataclasses.dataclass
class Conversion:
    """audio: float32 [N] at the generator's rate, peak-safe; gain_db: the level change that
    made it so (0 where nothing would have clipped); seconds: compute time of its batch (the
    real-time factor's denominator)."""
    audio: np.ndarray
    gain_db: float
    seconds: float


class Service:
    """The models, their batchers and readiness. `ready` turns true after `warm_up`."""

    def __init__(self, classifier: api.Classifier, transfer: api.StyleTransfer | None,
                 settings: Settings = Settings(), metrics: metrics_lib.Metrics | None = None):
        if transfer is not None and transfer.class_names != classifier.class_names:
            raise errors.UserError(
                f"The generator {transfer.info['workdir']} has genres {transfer.class_names}, the "
                f"classifier {classifier.info['workdir']} {classifier.class_names}: serve runs "
                "trained on the same dataset.")
        self.classifier, self.transfer, self.settings = classifier, transfer, settings
        self.metrics = metrics_lib.create() if metrics is None else metrics
        self.ready = threading.Event()
        self.class_names = classifier.class_names
        for role, model in (("classifier", classifier), ("generator", transfer)):
            if model is not None:
                info = model.info
                self.metrics.model_info.labels(role, info["workdir"], str(info["step"]),
                                               info["dataset"], str(info["sample_rate"])).set(1)
        classifier.observer = self._observer("classifier")
        self._classify = self._batcher("classifier", self._classify_batch,
                                       settings.max_batch_requests)
        self._convert = None
        if transfer is not None:
            self.buckets = self._buckets()
            # no more clips per call than one batch holds: a request never waits for chunks of
            # other requests run after its own
            self._convert = self._batcher("generator", self._convert_batch,
                                          max(self._convert_sizes()))

    @classmethod
    def from_runs(cls, classifier_workdir: str, generator_workdir: str | None = None,
                  settings: Settings = Settings(), checkpoint: str = "best") -> "Service":
        classifier = api.Classifier.from_run(classifier_workdir, checkpoint,
                                             batch_sizes=settings.classify_batch_sizes)
        transfer = None
        if generator_workdir:
            transfer = api.StyleTransfer.from_run(generator_workdir, mesh=classifier.mesh)
        return cls(classifier, transfer, settings)

    def _batcher(self, model: str, process, max_items: int) -> batching.MicroBatcher:
        s = self.settings
        return batching.MicroBatcher(process, max_items, s.max_wait_ms / 1000, s.queue_size,
                                     model, on_depth=self.metrics.queue_depth.labels(model).set)

    def dead_workers(self) -> list[str]:
        """The models whose batcher thread has stopped (liveness fails with them)."""
        return [name for name, b in (("classifier", self._classify), ("generator", self._convert))
                if b is not None and not b.alive()]

    def _observer(self, model: str):
        size, seconds = self.metrics.batch_size.labels(model), self.metrics.batch_seconds.labels(model)

        def observe(rows: int, batch: int, took: float) -> None:  # batch: rows with padding
            size.observe(rows)
            seconds.observe(took)
        return observe

    def warm_up(self) -> None:
        """Compiles (and for the generator runs once, on silence) every batch shape a request can
        meet, then marks the service ready."""
        self.classifier.compile()
        if self.transfer is not None:
            for length in self.buckets:
                for k in self._convert_sizes():
                    self.transfer.convert_many(np.zeros((k, length), np.float32), [0] * k, [1.0] * k)
        self.metrics.ready.set(1)
        self.ready.set()

    def close(self) -> None:
        self._classify.close()
        if self._convert is not None:
            self._convert.close()

    # ------------------------------------------------------------------ classify
    def submit_classify(self, audio: np.ndarray, name: str):
        """audio float32 [N] at the classifier's rate -> a Future of its `api.Prediction`.
        Raises batching.QueueFull."""
        return self._classify.submit((audio, name))

    def _classify_batch(self, items):
        clips, names = zip(*items)
        return self.classifier.predict_many(list(clips), list(names))

    # ------------------------------------------------------------------ convert
    def _buckets(self) -> list[int]:
        """Clip lengths (samples) the generator is compiled for: the window x 1, 2, 4, ... up to
        the first that holds max_convert_seconds."""
        window = self.transfer.method.window_samples(self.transfer.window_seconds)
        limit = self.settings.max_convert_seconds * self.transfer.sample_rate
        lengths = [window]
        while lengths[-1] < limit:
            lengths.append(2 * lengths[-1])
        return lengths

    def _convert_sizes(self) -> list[int]:
        sizes = [s for s in sorted(self.settings.convert_batch_sizes)
                 if s <= self.settings.max_batch_requests]
        return sizes or [1]

    def submit_convert(self, audio: np.ndarray, target: int, strength: float):
        """audio float32 [N] at the generator's rate (N <= the largest bucket) -> a Future of its
        `Conversion`. Raises batching.QueueFull."""
        return self._convert.submit((audio, target, strength))

    def _convert_batch(self, items) -> list[Conversion]:
        """Clips grouped by bucket; each group in batches of the compiled sizes."""
        results = [None] * len(items)
        sizes = self._convert_sizes()
        by_bucket = {}
        for i, (audio, _, _) in enumerate(items):
            by_bucket.setdefault(next(b for b in self.buckets if b >= len(audio)), []).append(i)
        for length, members in by_bucket.items():
            for start in range(0, len(members), sizes[-1]):
                chunk = members[start:start + sizes[-1]]
                k = next(s for s in sizes if s >= len(chunk))
                clips = np.zeros((k, length), np.float32)
                targets, strengths = np.zeros(k, np.int32), np.ones(k, np.float32)
                for row, i in enumerate(chunk):
                    audio, targets[row], strengths[row] = items[i]
                    clips[row] = np.pad(audio, (0, length - len(audio)), mode="symmetric")
                began = time.perf_counter()
                out = self.transfer.convert_many(clips, targets, strengths)
                took = time.perf_counter() - began
                self.metrics.batch_size.labels("generator").observe(len(chunk))
                self.metrics.batch_seconds.labels("generator").observe(took)
                for row, i in enumerate(chunk):
                    audio, gain_db = audio_files.peak_safe(out[row, :len(items[i][0])])
                    results[i] = Conversion(audio, gain_db, took)
        return results
