"""A trained style-transfer run (`configs/stargan.py`, `configs/autoencoder.py`) as a transfer
method: audio -> fixed-reference log-mel -> averaged generator -> the same vocoder as the
baselines (`methods.Codec`, with the run's own mel analysis) -> audio.

`GeneratorMethod` plugs into `evaluator.TransferEvaluator`; `convert_long` turns audio of any
length into a genre (the `jaxgenre.transfer` CLI): overlapping windows converted one by one,
their log-mels cross-faded on the file's frame grid, the file vocoded in one pass.

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
        if not 0.0 <= strength <= 1.0:
            raise ValueError(f"strength {strength:g} is outside [0, 1]: 0 keeps the input, 1 "
                             "is the full conversion.")
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
        # One file is vocoded whole on one device of this process (`convert_long`): memory
        # grows with the file's length, and each length compiles once.
        self._file_codec = methods.Codec(task.mel, vcfg,
                                         sharding.make_mesh(jax.local_devices()[:1]), phase, seed)
        data = sharding.batch_sharding(mesh)
        self._convert_db = jax.jit(functools.partial(_convert_db, task=task, strength=strength),
                                   in_shardings=(self.run.state_sharding, data, data),
                                   out_shardings=data)

    def convert_db(self, audio: jax.Array, target: jax.Array) -> jax.Array:
        """audio float32 [B, N] in [-1, 1] (or int16), target int32 [B] -> the converted
        fixed-reference log-mel dB [B, T, M] that `__call__` vocodes."""
        return self._convert_db(self.run.state, methods.to_float(audio), target)

    def __call__(self, audio: jax.Array, source: jax.Array, target: jax.Array) -> jax.Array:
        """audio float32 [B, N] in [-1, 1] (or int16), target int32 [B] -> float32 [B, N]."""
        x = methods.to_float(audio)
        return self.codec.synthesise(self.convert_db(x, target), x)

    def convert_long(self, audio: np.ndarray, target: int, window_seconds: float,
                     batch_size: int = 8) -> np.ndarray:
        """float32 [N] of any length -> float32 [N] in genre `target`, vocoded in one pass.

        Audio no longer than `window_seconds` (rounded up to whole pairs of STFT hops) is converted
        whole. Longer audio is cut into such windows every half window
        (`windows.crossfade_cut`); each window's log-mel is converted on its own, the converted
        log-mels are cross-faded on the file's frame grid with sin^2 weights that sum to one
        (`windows.crossfade_join_frames`), and the file is vocoded once, from its own phase: one
        phase reconstruction, where vocoding each window would cross-fade two independent ones
        (comb filtering where they disagree).
        """
        hop = self.codec.mel.hop_length
        # whole pairs of hops, rounded up: a window of the training crop is never shorter
        window = max(math.ceil(window_seconds * self.sample_rate / (2 * hop)), 1) * 2 * hop
        cut = audio[None] if len(audio) <= window else windows.crossfade_cut(audio, window)
        per_batch = sharding.round_up(batch_size, jax.device_count())
        targets = sharding.from_host(np.full(per_batch, target, np.int32), self.mesh)
        db = []
        for i in range(0, len(cut), per_batch):
            chunk = cut[i:i + per_batch]
            x = sharding.from_host(sharding.pad_rows(chunk, per_batch), self.mesh)
            db.append(np.asarray(jax.device_get(self.convert_db(x, targets)))[:len(chunk)])
        db = np.concatenate(db)
        if len(audio) > window:
            db = windows.crossfade_join_frames(db, window, hop, len(audio))[None]
        return np.asarray(self._file_codec.synthesise(db, audio[None].astype(np.float32)))[0]


def _convert_db(state, audio, target, *, task, strength):
    """float32 [B, N] -> converted fixed-reference log-mel dB [B, T, M], at `strength`."""
    x = task.spectrogram(audio * 32768.0)
    db_in = task.to_db(x)
    return db_in + strength * (task.to_db(task.convert(state, x, target)) - db_in)
