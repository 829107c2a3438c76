"""Trained runs as plain Python objects: numpy audio in, numpy out.

  clf = Classifier.from_run("runs/demo")
  verdict = clf.predict(audio, sample_rate)          # Prediction: per-window and mean genres
  st = StyleTransfer.from_run("runs/stargan_demo")
  rock = st.convert(audio, sample_rate, to="Rock", strength=1.0)   # float32, input's rate

`audio` is [N] or [N, channels], float in [-1, 1] or integer PCM, at any rate: mixed to mono and
resampled to the run's rate (`audio_files.conform`). The mesh (every device, `make_mesh`), the
shardings, the windows and the vocoder have defaults a user never has to pass. The
`predict` and `jaxgenre.transfer` CLIs and `jaxgenre.serve` are built on these two classes.

Classifier: a file is cut into windows of 10 s (or the run's crop if longer; the whole file if
shorter) every half window, the last one ending at the file's end; the judge averages its crops
over each window as `jaxgenre.evaluate` does over a clip; a file's probabilities are the mean of
its windows'. Windows of all the files given at once share batches of a few fixed sizes (one
compilation each, `compile`), split over every device.
"""
import collections
import dataclasses
import time
from collections.abc import Callable, Iterable, Iterator, Sequence

import jax
import numpy as np

from jaxgenre.audio import vocoder, windows
from jaxgenre.core import errors, sharding
from jaxgenre.data import audio_files
from jaxgenre.inference import judge as judge_lib
from jaxgenre.inference import litert
from jaxgenre.run import rundir
from jaxgenre.transfer import generator

DEFAULT_WINDOW_SECONDS = 10.0

class InputError(errors.UserError, ValueError):
    """A call the run cannot answer (unknown genre, strength outside [0, 1], a window shorter
    than the run's crop): the message names the problem and the valid values."""


# Called after each batch with (rows of real audio, rows in the batch, seconds it took).
BatchObserver = Callable[[int, int, float], None]


def check_window(seconds: float, crop: float) -> None:
    """Refuses a window shorter than the run's training crop: the model would hear mostly
    zero padding."""
    if seconds < crop:
        raise InputError(f"a window of {seconds:g} s is shorter than the run's {crop:g} s "
                         f"crop; pass {crop:g} or more (--window_seconds).")


@dataclasses.dataclass
class Prediction:
    """One file's verdict.

    times: float32 [W], each window's centre in seconds from the file's start.
    window_probabilities: float32 [W, C], the judge's probabilities per window (C = genres).
    warning: why the verdict means little (`audio_files.verdict_warning`), or None.
    """
    path: str
    times: np.ndarray
    window_probabilities: np.ndarray
    warning: str | None = None

    @property
    def probabilities(self) -> np.ndarray:
        """float32 [C]: the mean of the windows' probabilities (each window counts the same)."""
        return self.window_probabilities.mean(axis=0)


@dataclasses.dataclass
class Skipped:
    """A file that could not be read; `reason` names the file and the problem."""
    path: str
    reason: str


def run_info(workdir: str, config, step: int, dataset: str, sample_rate: int) -> dict:
    """What a restored run is, for people and monitoring: its directory, task, model, step,
    dataset and sample rate."""
    return {"workdir": str(workdir), "task": config.get("task", "classifier"),
            "model": config.model.name, "step": int(step), "dataset": dataset,
            "sample_rate": int(sample_rate)}


class Classifier:
    """A genre classifier run (its averaged weights) that names the genres of audio.

    Attributes: class_names, sample_rate, window (samples per window), batch_sizes (rows per
    jitted batch, each a multiple of the device count), info (`run_info`, with `runtime`:
    'jax', or 'litert-float32' / 'litert-int8' for a LiteRT export), judge (a `Judge` on `mesh`,
    or a `litert.LiteJudge` with mesh None).
    """

    def __init__(self, judge: judge_lib.Judge | litert.LiteJudge, mesh: jax.sharding.Mesh | None,
                 window_seconds: float | None = None, batch_sizes: Sequence[int] = (16,)):
        self.judge, self.mesh = judge, mesh
        self.class_names, self.sample_rate = judge.class_names, judge.sample_rate
        crop = judge.config.data.crop_seconds
        seconds = max(DEFAULT_WINDOW_SECONDS, crop) if window_seconds is None else window_seconds
        check_window(seconds, crop)
        self.window = round(seconds * judge.sample_rate)
        if not batch_sizes or min(batch_sizes) < 1:
            raise InputError(f"batch sizes {tuple(batch_sizes)}: pass one or more, each at least 1.")
        devices = 1 if mesh is None else mesh.size
        self.batch_sizes = sorted({sharding.round_up(b, devices) for b in batch_sizes})
        self.info = run_info(judge.workdir, judge.config, judge.step, judge.dataset,
                             judge.sample_rate)
        self.info["runtime"] = ("jax" if mesh is not None else
                                "litert-" + {"none": "float32"}.get(judge.quantize, judge.quantize))
        self.observer: BatchObserver | None = None

    @classmethod
    def from_run(cls, workdir: str, checkpoint: str = "best", *,
                 window_seconds: float | None = None, batch_sizes: Sequence[int] = (16,),
                 mesh: jax.sharding.Mesh | None = None) -> "Classifier":
        """Restores `workdir`'s `checkpoint` ('best', 'latest' or a step) on `mesh` (default:
        every device, `sharding.make_mesh`). Refuses any run but a classifier before restoring.
        `workdir` may also be a LiteRT export (`jaxgenre.export --format tflite`, float or int8),
        which runs on this process's CPU threads (no mesh; `checkpoint` does not apply)."""
        if litert.is_export(workdir):  # `jaxgenre.export --format tflite`: LiteRT on the CPU
            return cls(litert.LiteJudge(workdir), None, window_seconds, batch_sizes)
        rundir.check_task(workdir, rundir.load_config(workdir), ("classifier",))
        mesh = sharding.make_mesh() if mesh is None else mesh
        return cls(judge_lib.Judge(workdir, mesh, checkpoint), mesh, window_seconds, batch_sizes)

    def compile(self) -> None:
        """Compiles the judge for every batch size without running it, so no call pays it."""
        for size in self.batch_sizes:
            self.judge.compile(size, self.window)

    def predict(self, audio: np.ndarray, sample_rate: int, name: str = "audio") -> Prediction:
        """One clip of any length -> its Prediction (see the module docstring)."""
        return self.predict_many([audio_files.conform(audio, sample_rate, self.sample_rate, name)],
                                 [name])[0]

    def predict_many(self, clips: Sequence[np.ndarray],
                     names: Sequence[str] | None = None) -> list[Prediction]:
        """float32 [N_i] mono clips in [-1, 1] at the run's `sample_rate` (`audio_files.conform`
        makes them) -> one Prediction each, their windows sharing batches."""
        names = [f"clip {i}" for i in range(len(clips))] if names is None else names
        batcher, files = self._batcher(), []
        for name, clip in zip(names, clips, strict=True):
            files.append(self._file(name, clip))
            batcher.add(files[-1], clip)
        batcher.flush()
        return [f.prediction() for f in files]

    def predict_files(self, paths: Iterable[str]) -> Iterator[Prediction | Skipped]:
        """Reads and judges each file in `paths`, yielding a Prediction or a Skipped per file in
        input order; the next file decodes while the judge runs."""
        batcher = self._batcher()
        queue = collections.deque()  # _File or Skipped, in input order, until done
        for path in paths:
            try:
                audio = audio_files.read(path, self.sample_rate)
            except (FileNotFoundError, ValueError) as e:
                queue.append(Skipped(path, str(e)))
            else:
                queue.append(self._file(path, audio))
                batcher.add(queue[-1], audio)
            yield from _done(queue)
        batcher.flush()
        yield from _done(queue)

    def _file(self, name: str, audio: np.ndarray) -> "_File":
        starts = windows.covering_starts(len(audio), self.window)
        lengths = np.minimum(len(audio) - starts, self.window)
        warning = audio_files.verdict_warning(audio, self.sample_rate, self.judge.crop_samples)
        return _File(name, starts, lengths, self.sample_rate, len(self.class_names), warning)

    def _batcher(self) -> "_Batcher":
        return _Batcher(self.judge, self.mesh, self.window, self.batch_sizes, self.observer)


class _File:
    """A file whose windows are queued: their probabilities fill in as batches finish."""

    def __init__(self, path: str, starts: np.ndarray, lengths: np.ndarray, rate: int,
                 num_classes: int, warning: str | None):
        self.path, self.starts, self.warning = path, starts, warning
        self.times = ((starts + lengths / 2) / rate).astype(np.float32)
        self.probabilities = np.zeros((len(starts), num_classes), np.float32)
        self.remaining = len(starts)

    def prediction(self) -> Prediction:
        return Prediction(self.path, self.times, self.probabilities, self.warning)


class _Batcher:
    """Packs windows of many files into batches [B, window] of the fixed sizes `sizes` (one
    compilation each): full batches of the largest, the rest in the smallest that holds it,
    padded with masked rows (zeros, length 0, results dropped).

    One batch stays in flight: JAX returns before the judge finishes, so the next file decodes
    while it runs; its results are collected when the next batch goes out, or on `flush`.
    """

    def __init__(self, judge: judge_lib.Judge | litert.LiteJudge, mesh: jax.sharding.Mesh | None,
                 window: int, sizes: Sequence[int], observer: BatchObserver | None):
        self.judge, self.window, self.sizes = judge, window, sizes
        self._mesh, self._observer = mesh, observer
        self._rows = []  # (file, window index, audio float32 [<= window])
        self._in_flight = None  # (rows, batch size, start time, probabilities jax.Array [B, C])

    def add(self, file: _File, audio: np.ndarray) -> None:
        self._rows += [(file, i, audio[s:s + self.window]) for i, s in enumerate(file.starts)]
        while len(self._rows) >= self.sizes[-1]:
            self._dispatch(self._rows[:self.sizes[-1]])
            del self._rows[:self.sizes[-1]]

    def flush(self) -> None:
        if self._rows:
            self._dispatch(self._rows)
            self._rows = []
        self._collect()

    def _dispatch(self, rows) -> None:
        size = next(s for s in self.sizes if s >= len(rows))
        audio = np.zeros((size, self.window), np.float32)
        lengths = np.zeros(size, np.int32)
        for r, (_, _, clip) in enumerate(rows):
            audio[r, :len(clip)], lengths[r] = clip, len(clip)
        self._collect()
        start = time.perf_counter()
        if self._mesh is not None:  # a LiteJudge (no mesh) takes the host arrays as they are
            audio, lengths = (sharding.from_host(audio, self._mesh),
                              sharding.from_host(lengths, self._mesh))
        probabilities, _ = self.judge(audio, lengths)
        self._in_flight = (rows, size, start, probabilities)

    def _collect(self) -> None:
        if self._in_flight is None:
            return
        rows, size, start, probabilities = self._in_flight
        probabilities = np.asarray(probabilities)  # waits for the judge
        if self._observer:
            self._observer(len(rows), size, time.perf_counter() - start)
        for r, (file, i, _) in enumerate(rows):
            file.probabilities[i] = probabilities[r]
            file.remaining -= 1
        self._in_flight = None


def _done(queue: collections.deque) -> Iterator[Prediction | Skipped]:
    """Pops finished entries from the front of `queue`, so that results keep the input order."""
    while queue and (isinstance(queue[0], Skipped) or queue[0].remaining == 0):
        entry = queue.popleft()
        yield entry if isinstance(entry, Skipped) else entry.prediction()


class StyleTransfer:
    """A style-transfer run (configs/stargan.py, configs/autoencoder.py) that turns audio into a
    genre: `GeneratorMethod.convert_many` (windows of 2 x the training crop converted in
    batches, cross-faded, each file vocoded in one pass), then scaled down where it would clip.

    Attributes: class_names, sample_rate, window_seconds, info (`run_info`), method.
    """

    def __init__(self, method: generator.GeneratorMethod, window_seconds: float | None = None):
        self.method = method
        config = method.run.config
        crop = config.data.crop_seconds
        self.window_seconds = 2 * crop if window_seconds is None else window_seconds
        check_window(self.window_seconds, crop)
        self.class_names, self.sample_rate = method.class_names, method.sample_rate
        self.info = run_info(method.run.workdir, config, method.run.step,
                             method.run.data.name, method.sample_rate)

    @classmethod
    def from_run(cls, workdir: str, checkpoint: str = "best", *,
                 window_seconds: float | None = None,
                 gl_iters: int = vocoder.VocoderConfig.n_iter,
                 mesh: jax.sharding.Mesh | None = None) -> "StyleTransfer":
        """Restores `workdir`'s generator (`checkpoint` 'best', 'latest' or a step) on `mesh`
        (default: every device, `sharding.make_mesh`), vocoding with `gl_iters` Griffin-Lim
        iterations. Refuses any run but a style-transfer one before restoring."""
        rundir.check_task(workdir, rundir.load_config(workdir), generator.GENERATOR_TASKS)
        mesh = sharding.make_mesh() if mesh is None else mesh
        method = generator.GeneratorMethod(workdir, mesh, vocoder.VocoderConfig(n_iter=gl_iters),
                                           checkpoint=checkpoint)
        return cls(method, window_seconds)

    def target(self, to: str | int) -> int:
        """A genre name (or index) -> its index; an unknown one is refused naming the valid."""
        if isinstance(to, (int, np.integer)):
            if 0 <= to < len(self.class_names):
                return int(to)
        elif to in self.class_names:
            return self.class_names.index(to)
        raise InputError(f"Unknown genre {to!r}; valid: {', '.join(self.class_names)}.")

    def convert(self, audio: np.ndarray, sample_rate: int, to: str | int,
                strength: float = 1.0) -> np.ndarray:
        """One clip of any length -> float32 [N'] in genre `to` at `sample_rate` (the input's),
        scaled down where it would clip as 16-bit PCM (`audio_files.peak_safe`).

        strength in [0, 1]: 0 keeps the input (through the vocoder), 1 the full conversion.
        """
        clip = audio_files.conform(audio, sample_rate, self.sample_rate)
        out = self.convert_many(clip[None], [to], [strength])[0]
        out = audio_files.conform(out, self.sample_rate, sample_rate)
        return audio_files.peak_safe(out)[0]

    def convert_many(self, clips: np.ndarray, targets: Sequence[str | int],
                     strengths: Sequence[float]) -> np.ndarray:
        """float32 [K, N] mono clips in [-1, 1] of one length at the run's `sample_rate` ->
        float32 [K, N] converted, not yet peak-safe; targets: K genre names or indices,
        strengths: K values in [0, 1]. One jitted pass for all K
        (`GeneratorMethod.convert_many`)."""
        strengths = np.asarray(strengths, np.float32)
        try:
            generator.check_strength(strengths)
        except ValueError as e:
            raise InputError(str(e)) from None
        return self.method.convert_many(np.asarray(clips, np.float32),
                                        np.array([self.target(t) for t in targets], np.int32),
                                        self.window_seconds, strengths=strengths)
