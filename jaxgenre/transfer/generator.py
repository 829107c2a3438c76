"""A trained style-transfer run (`configs/stargan.py`, `configs/autoencoder.py`) as a transfer
method: audio -> fixed-reference log-mel -> averaged generator -> the same vocoder as the
baselines (`methods.Codec`, with the run's own mel analysis) -> audio.

`GeneratorMethod` plugs into `evaluator.TransferEvaluator`; `convert_many` turns files of any
length into genres (the `jaxgenre.transfer` CLI and the service, through `jaxgenre.api`):
overlapping windows converted in batches, their log-mels cross-faded on each file's frame grid,
each file vocoded in one pass.

Strength: the converted log-mel is `input + strength * (conversion - input)` in dB, so 0 is
the identity codec exactly, 1 the generator's conversion, and values between scale every
change the generator makes (level, EQ, added or removed partials) alike. Chosen over
interpolating the target's style embedding from the source genre's because that gives
G(x, source) at 0, which is the identity only as far as training made it so, and needs the
source genre, which a user's song does not come with.
"""
import functools
import math

import jax
import numpy as np
from etils import epath

from jaxgenre import tasks
from jaxgenre.audio import vocoder, windows
from jaxgenre.core import sharding
from jaxgenre.run import rundir
from jaxgenre.transfer import methods

GENERATOR_TASKS = ("stargan", "autoencoder")


class GeneratorMethod:
    """Converts with the `generator_ema` weights of `checkpoint` ('best' | 'latest' | STEP), at
    `strength` in [0, 1] (see the module docstring).

    Attributes: name ('<task>_<workdir name>', with '@<step>' unless `checkpoint` is 'best' and
    '@strength<s>' unless `strength` is 1), run (`rundir.Run`), codec, class_names, sample_rate.
    """
    uses_target = True

    def __init__(self, workdir: str, mesh: jax.sharding.Mesh, vcfg: vocoder.VocoderConfig,
                 phase: str = "source", seed: int = 0, checkpoint: str = "best",
                 strength: float = 1.0):
        check_strength(np.array([strength]))
        self.run = rundir.restore(workdir, mesh, tasks.create, checkpoint, items=("generator_ema",),
                                expect_tasks=GENERATOR_TASKS)
        task = self.run.task
        self.name = f"{self.run.config.task}_{epath.Path(workdir).resolve().name}"
        if checkpoint != "best":
            self.name += f"@{self.run.step}"
        if strength != 1.0:
            self.name += f"@strength{strength:g}"
        self.class_names, self.sample_rate = list(task.data.class_names), task.data.sample_rate
        self.mesh = mesh
        self.codec = methods.Codec(task.mel, vcfg, mesh, phase, seed)
        # Files are vocoded whole on one device of this process (`convert_many`): memory grows
        # with their number times their length, and each shape compiles once.
        self._file_codec = methods.Codec(task.mel, vcfg,
                                         sharding.make_mesh(jax.local_devices()[:1]), phase, seed)
        self.strength = strength
        data = sharding.batch_sharding(mesh)
        # strength is an argument, not a constant: callers converting at many strengths (the
        # service) share one compilation.
        self._convert_db = jax.jit(functools.partial(_convert_db, task=task),
                                   in_shardings=(self.run.state_sharding, data, data, data),
                                   out_shardings=data)

    def convert_db(self, audio: jax.Array, target: jax.Array,
                   strength: jax.Array | None = None) -> jax.Array:
        """audio float32 [B, N] in [-1, 1] (or int16), target int32 [B], strength float32 [B]
        (default: the method's) -> the converted fixed-reference log-mel dB [B, T, M] that
        `__call__` vocodes."""
        if strength is None:
            strength = sharding.from_host(np.full(target.shape, self.strength, np.float32),
                                          self.mesh)
        return self._convert_db(self.run.state, methods.to_float(audio), target, strength)

    def __call__(self, audio: jax.Array, source: jax.Array, target: jax.Array) -> jax.Array:
        """audio float32 [B, N] in [-1, 1] (or int16), target int32 [B] -> float32 [B, N]."""
        x = methods.to_float(audio)
        return self.codec.synthesise(self.convert_db(x, target), x)

    def window_samples(self, window_seconds: float) -> int:
        """`window_seconds` in samples, rounded up to whole pairs of STFT hops (so the windows'
        frames fall on the file's frame grid; a window of the training crop is never shorter)."""
        hop = self.codec.mel.hop_length
        return max(math.ceil(window_seconds * self.sample_rate / (2 * hop)), 1) * 2 * hop

    def convert_many(self, audio: np.ndarray, targets: np.ndarray, window_seconds: float,
                     batch_size: int = 8, strengths: np.ndarray | None = None) -> np.ndarray:
        """float32 [K, N] (K files of one length) -> float32 [K, N], file k in genre
        `targets[k]` (int [K]) at `strengths[k]` (float [K], default the method's).

        Files no longer than `window_samples(window_seconds)` are converted whole. Longer ones
        are cut into such windows every half window (`windows.crossfade_cut`); every window's
        log-mel is converted on its own (the windows of all K files share batches of
        `batch_size`, rounded up to a multiple of the device count), each file's converted
        log-mels are cross-faded on its frame grid with sin^2 weights that sum to one
        (`windows.crossfade_join_frames`), and the K files are vocoded together in one pass, each
        from its own phase: one phase reconstruction per file, where vocoding each window would
        cross-fade two independent ones (comb filtering where they disagree).
        """
        if audio.ndim != 2:
            raise ValueError(f"audio has shape {audio.shape}; pass [K files, N samples].")
        k, n = audio.shape
        targets = np.asarray(targets)
        strengths = np.full(k, self.strength) if strengths is None else np.asarray(strengths)
        if targets.shape != (k,) or strengths.shape != (k,):
            raise ValueError(f"{k} files need {k} targets and {k} strengths, not shapes "
                             f"{targets.shape} and {strengths.shape}.")
        if not ((targets >= 0) & (targets < len(self.class_names))).all():
            raise ValueError(f"targets {targets.tolist()}: genre indices run from 0 to "
                             f"{len(self.class_names) - 1}.")
        check_strength(strengths)
        window = self.window_samples(window_seconds)
        cuts = [a[None] if n <= window else windows.crossfade_cut(a, window) for a in audio]
        per_file = len(cuts[0])
        rows = np.concatenate(cuts)
        row_targets = np.repeat(np.asarray(targets, np.int32), per_file)
        row_strengths = np.repeat(strengths.astype(np.float32), per_file)
        per_batch = sharding.round_up(batch_size, self.mesh.size)
        db = []
        for i in range(0, len(rows), per_batch):
            put = [sharding.from_host(sharding.pad_rows(x[i:i + per_batch], per_batch), self.mesh)
                   for x in (rows, row_targets, row_strengths)]
            db.append(np.asarray(jax.device_get(self.convert_db(*put)))[:len(rows) - i])
        db = np.concatenate(db).reshape(k, per_file, *db[0].shape[1:])
        if n > window:
            hop = self.codec.mel.hop_length
            db = np.stack([windows.crossfade_join_frames(d, window, hop, n) for d in db])
        else:
            db = db[:, 0]
        return np.asarray(self._file_codec.synthesise(db, audio.astype(np.float32)))


def check_strength(strengths: np.ndarray) -> None:
    """Refuses strengths outside [0, 1] (float [K]), naming them."""
    bad = strengths[~((strengths >= 0.0) & (strengths <= 1.0))]
    if bad.size:
        raise ValueError(f"strength {bad[0]:g} is outside [0, 1]: 0 keeps the input, 1 is the "
                         "full conversion.")


def _convert_db(state, audio, target, strength, *, task):
    """float32 [B, N] -> converted fixed-reference log-mel dB [B, T, M], at `strength` [B]."""
    x = task.spectrogram(audio * 32768.0)
    db_in = task.to_db(x)
    change = task.to_db(task.convert(state, x, target)) - db_in
    return db_in + strength[:, None, None] * change
