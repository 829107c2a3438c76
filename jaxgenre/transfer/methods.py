"""Transfer methods: one interface, the trivial baselines as its first implementations.

A method maps (audio [B, N], source genre [B], target genre [B]) to audio [B, N]:
  audio: int16 PCM or float32 in [-1, 1], batch-sharded over the mesh; genres: int32 labels.
  returns: float32 [B, N] in [-1, 1] at the same sample rate.
`uses_target` False tells the evaluator that the output does not depend on the target, so one
conversion per clip serves every target.

Every baseline works on the fixed-reference log-mel and goes back to audio through the same
vocoder (`Codec`), so the vocoder's damage is the same for all of them and for learned methods.
"""
import functools
from typing import Protocol

import jax
import jax.numpy as jnp
import numpy as np
from jax.experimental import multihost_utils

from jaxgenre.audio import frontend, ltas, vocoder
from jaxgenre.core import sharding

BASELINES = ("identity", "random_target", "eq")


class TransferMethod(Protocol):
    name: str
    uses_target: bool

    def __call__(self, audio: jax.Array, source: jax.Array, target: jax.Array) -> jax.Array: ...


def to_float(audio: jax.Array) -> jax.Array:
    """int16 PCM -> float32 in [-1, 1]; float input is taken as already on that scale."""
    if jnp.issubdtype(audio.dtype, jnp.integer):
        return audio.astype(jnp.float32) / 32768.0
    return audio.astype(jnp.float32)


class Codec:
    """The fixed-reference log-mel and its inverse, jitted with batch shardings over `mesh`.

    phase: 'source' starts Griffin-Lim from the phase of the audio given to `synthesise`
      (the clip the log-mel came from), 'random' from random phases drawn from `seed`.
    """

    def __init__(self, mel: frontend.MelConfig, vcfg: vocoder.VocoderConfig,
                 mesh: jax.sharding.Mesh, phase: str = "source", seed: int = 0):
        if mel.ref is None:
            raise ValueError("The codec needs a fixed-reference log-mel (MelConfig.ref, e.g. 1.0).")
        if phase not in ("source", "random"):
            raise ValueError(f"Unknown phase {phase!r}; valid: source, random.")
        self.mel, self.vcfg, self.mesh, self.phase = mel, vcfg, mesh, phase
        self._key = jax.random.key(seed)
        self._calls = 0
        data = sharding.batch_sharding(mesh)
        self._analyse = jax.jit(lambda x: frontend.log_mel(x * 32768.0, mel, mesh=mesh),
                                in_shardings=data, out_shardings=data)
        self._synth = jax.jit(self._synth_fn, static_argnums=(3,),
                              in_shardings=(data, data, sharding.replicated(mesh)),
                              out_shardings=data)

    def _synth_fn(self, db, phase_audio, key, num_samples):
        if self.phase == "source":
            return vocoder.log_mel_to_audio(db, self.mel, self.vcfg, num_samples,
                                            phase_audio=phase_audio, mesh=self.mesh)
        return vocoder.log_mel_to_audio(db, self.mel, self.vcfg, num_samples, key=key,
                                        mesh=self.mesh)

    def analyse(self, audio: jax.Array) -> jax.Array:
        """float32 [B, N] in [-1, 1] -> log-mel dB [B, T, n_mels] relative to `mel.ref`."""
        return self._analyse(audio)

    def synthesise(self, db: jax.Array, phase_audio: jax.Array) -> jax.Array:
        """log-mel [B, T, n_mels] -> float32 [B, N]; N and (with phase='source') the initial
        phase come from `phase_audio` [B, N]."""
        self._calls += 1  # a fresh random phase per call, reproducible from the seed
        key = jax.random.fold_in(self._key, self._calls)
        return self._synth(db, phase_audio, key, phase_audio.shape[1])


class Identity:
    """input -> log-mel -> audio: the vocoder's own damage and nothing else."""
    name, uses_target = "identity", False

    def __init__(self, codec: Codec):
        self.codec = codec

    def __call__(self, audio, source, target):
        x = to_float(audio)
        return self.codec.synthesise(self.codec.analyse(x), x)


class RandomTarget:
    """A real clip of the target genre, drawn at random from a pool of the evaluation split,
    through the codec: all style, no content.

    pool: {label: int16 [n, N]} (from `input_pipeline.clips_by_label`).
    """
    name, uses_target = "random_target", True

    def __init__(self, codec: Codec, pool: dict[int, np.ndarray], seed: int = 0):
        self.codec, self.pool = codec, pool
        self.rng = np.random.default_rng(seed)  # the same draws on every process

    def __call__(self, audio, source, target):
        targets = np.asarray(multihost_utils.process_allgather(target, tiled=True))
        missing = sorted(set(targets.tolist()) - set(self.pool))
        if missing:
            raise ValueError(f"No clip of label(s) {missing} in the evaluation split to draw from.")
        chosen = np.stack([self.pool[t][self.rng.integers(len(self.pool[t]))] for t in targets])
        chosen = chosen.astype(np.float32) / 32768.0
        clips = sharding.from_host(chosen, self.codec.mesh)
        return self.codec.synthesise(self.codec.analyse(clips), clips)


class Eq:
    """The input's long-term average mel spectrum moved to the target genre's mean: one EQ
    curve (a dB gain per mel band, the same for every frame) applied to the input's log-mel.

    genre_ltas: float32 [C, n_mels], each genre's mean long-term average spectrum in dB
      (`data.spectra.genre_ltas` over training clips).
    """
    name, uses_target = "eq", True

    def __init__(self, codec: Codec, genre_ltas: np.ndarray):
        self.codec = codec
        data = sharding.batch_sharding(codec.mesh)
        self._equalise = jax.jit(functools.partial(_equalise, genre_ltas=jnp.asarray(genre_ltas)),
                                 in_shardings=(data, data), out_shardings=data)

    def __call__(self, audio, source, target):
        x = to_float(audio)
        return self.codec.synthesise(self._equalise(self.codec.analyse(x), target), x)


def _equalise(db, target, *, genre_ltas):
    gain = genre_ltas[target] - ltas.ltas_db(db)  # [B, M]
    return db + gain[:, None, :]
