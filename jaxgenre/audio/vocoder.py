"""Log-mel -> audio: the inverse of `jaxgenre.audio.frontend.log_mel`, jitted, batched and sharded.

Three steps, each undoing one of the frontend's:
  1. dB -> mel power: `cfg.ref * 10 ** (dB / 10)` (the frontend's `ref` must be a fixed power
     for the level to come back; with `ref=None` the loudest bin of each clip comes back at 1.0).
  2. mel power -> linear magnitude: the mel filterbank has fewer rows than FFT bins, so this is a
     non-negative least-squares problem per frame. librosa solves it with L-BFGS-B from the
     clipped pseudo-inverse; we start from the same point and take accelerated projected-gradient
     (FISTA) steps, which are matmuls and run on any accelerator.
  3. magnitude -> waveform: fast Griffin-Lim (librosa's `griffinlim` update with momentum), from
     random phase or from a given clip's STFT phase (cheapest and best when the time axis is the
     source's, as in style transfer on a fixed time grid).

Like the frontend, everything is per example: under a batch-sharded mesh it runs in
`jax.shard_map`, so the FFTs never gather the batch (jax issue 15680).
"""
import dataclasses
import functools

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import PartitionSpec as P

from jaxgenre.audio import frontend


@dataclasses.dataclass(frozen=True)
class VocoderConfig:
    """Inversion settings (librosa's `mel_to_audio` defaults where it has them).

    n_iter: Griffin-Lim iterations (librosa: 32).
    momentum: fast Griffin-Lim momentum (librosa: 0.99; 0 is classic Griffin-Lim).
    nnls_steps: projected-gradient steps from the clipped pseudo-inverse (0: pseudo-inverse only).
    """
    n_iter: int = 32
    momentum: float = 0.99
    nnls_steps: int = 100


def _window_sumsquare(cfg: frontend.MelConfig, num_frames: int) -> np.ndarray:
    """Overlap-added squared window over `num_frames` frames: [(num_frames - 1) * hop + n_fft]."""
    w2 = frontend.window(cfg.n_fft).astype(np.float64) ** 2
    out = np.zeros((num_frames - 1) * cfg.hop_length + cfg.n_fft)
    for t in range(num_frames):
        out[t * cfg.hop_length:t * cfg.hop_length + cfg.n_fft] += w2
    return out


def istft(spec: jax.Array, cfg: frontend.MelConfig, num_samples: int) -> jax.Array:
    """librosa's `istft(center=True, length=num_samples)`: complex [B, T, F] -> float32 [B, N].

    Overlap-add as k = ceil(n_fft / hop) shifted block sums (no scatter), divided by the
    overlap-added squared window, then the frontend's n_fft // 2 padding cut off.
    """
    batch, num_frames, _ = spec.shape
    n_fft, hop = cfg.n_fft, cfg.hop_length
    k = -(-n_fft // hop)
    framed = jnp.fft.irfft(spec, n=n_fft, axis=-1) * frontend.window(n_fft)
    framed = jnp.pad(framed, ((0, 0), (0, 0), (0, k * hop - n_fft))).reshape(batch, num_frames, k, hop)
    blocks = sum(jnp.pad(framed[:, :, j], ((0, 0), (j, k - 1 - j), (0, 0))) for j in range(k))
    signal = blocks.reshape(batch, -1)[:, :(num_frames - 1) * hop + n_fft]
    wss = _window_sumsquare(cfg, num_frames)
    tiny = np.finfo(np.float32).tiny
    signal = signal * np.where(wss > tiny, 1.0 / np.maximum(wss, tiny), 1.0).astype(np.float32)
    start = n_fft // 2
    signal = signal[:, start:start + num_samples]
    return jnp.pad(signal, ((0, 0), (0, num_samples - signal.shape[1])))


def db_to_mel_power(db: jax.Array, cfg: frontend.MelConfig) -> jax.Array:
    """Undoes `frontend.power_to_db` (except its top_db floor): [B, T, n_mels] float32."""
    return (1.0 if cfg.ref is None else cfg.ref) * 10.0 ** (db / 10.0)


def mel_to_magnitude(mel_power: jax.Array, cfg: frontend.MelConfig, steps: int) -> jax.Array:
    """Non-negative least squares for the linear power, then its square root.

    Solves min_{X >= 0} ||X M - mel||^2 per frame (M: the [F, n_mels] filterbank), from
    max(mel pinv(M), 0) by `steps` accelerated projected-gradient steps of size 1 / ||M||_2^2.

    Args:
      mel_power: [B, T, n_mels] float32.
    Returns:
      linear magnitude [B, T, n_fft // 2 + 1] float32.
    """
    fb = frontend.mel_filterbank(cfg).astype(np.float64)  # [F, n_mels]
    pinv = np.linalg.pinv(fb).astype(np.float32)  # [n_mels, F]
    step = np.float32(1.0 / np.linalg.norm(fb, 2) ** 2)
    fb = fb.astype(np.float32)
    mm = functools.partial(jnp.matmul, precision=cfg.precision)

    def body(_, carry):
        x, y, t = carry  # iterate, extrapolated point, momentum scalar
        # The gradient through the [F, n_mels] filterbank twice: 2 F n_mels flops per frame
        # instead of F^2 with a precomputed Gram matrix.
        x_next = jnp.maximum(y - step * mm(mm(y, fb) - mel_power, fb.T), 0.0)
        t_next = (1.0 + jnp.sqrt(1.0 + 4.0 * t * t)) / 2.0
        return x_next, x_next + ((t - 1.0) / t_next) * (x_next - x), t_next

    x0 = jnp.maximum(mm(mel_power, pinv), 0.0)
    power, _, _ = jax.lax.fori_loop(0, steps, body, (x0, x0, jnp.float32(1.0)))
    return jnp.sqrt(power)


def griffin_lim(magnitude: jax.Array, cfg: frontend.MelConfig, vcfg: VocoderConfig,
                num_samples: int, phase: jax.Array) -> jax.Array:
    """Fast Griffin-Lim (librosa's update): magnitude [B, T, F] float32 and an initial unit
    phase [B, T, F] complex64 -> waveform [B, num_samples] float32 in librosa's [-1, 1] scale."""
    rate = vcfg.momentum / (1.0 + vcfg.momentum)
    eps = np.finfo(np.float32).tiny

    def body(_, carry):
        angles, previous = carry
        rebuilt = frontend.stft(istft(angles, cfg, num_samples), cfg)
        update = rebuilt - rate * previous
        return magnitude * update / (jnp.abs(update) + eps), rebuilt

    # Momentum needs the previous rebuild; a zero one makes the first update plain Griffin-Lim.
    angles, _ = jax.lax.fori_loop(0, vcfg.n_iter, body,
                                  (magnitude * phase, jnp.zeros_like(phase)))
    return istft(angles, cfg, num_samples)


def unit_phase(spec: jax.Array) -> jax.Array:
    """spec / |spec| (1 where the bin is zero): complex [..., F] -> complex64 [..., F]."""
    mag = jnp.abs(spec)
    return jnp.where(mag > 0, spec / jnp.where(mag > 0, mag, 1.0), 1.0 + 0j).astype(jnp.complex64)


def _invert_local(db, keys, phase_audio, cfg, vcfg, num_samples):
    magnitude = mel_to_magnitude(db_to_mel_power(db, cfg), cfg, vcfg.nnls_steps)
    if phase_audio is None:
        angle = jax.vmap(lambda k: jax.random.uniform(k, magnitude.shape[1:], maxval=2 * np.pi))(keys)
        phase = jnp.exp(1j * angle).astype(jnp.complex64)
    else:
        phase = unit_phase(frontend.stft(phase_audio.astype(jnp.float32), cfg))
    return griffin_lim(magnitude, cfg, vcfg, num_samples, phase)


def log_mel_to_audio(db: jax.Array, cfg: frontend.MelConfig, vcfg: VocoderConfig,
                     num_samples: int, key: jax.Array | None = None,
                     phase_audio: jax.Array | None = None,
                     mesh: jax.sharding.Mesh | None = None, batch_axis: str = "data") -> jax.Array:
    """The inverse of `frontend.log_mel(audio, cfg)`.

    Args:
      db: [B, T, n_mels] float32 log-mel, as the frontend with `cfg` makes it.
      num_samples: output length N (the frontend maps N samples to 1 + N // hop frames).
      key: for random initial phases (one draw per example); used when `phase_audio` is None.
      phase_audio: float [B, num_samples] on librosa's [-1, 1] scale, whose STFT phase starts
        Griffin-Lim (e.g. the source clip of a transfer).
      mesh: when given, the batch is sharded over `batch_axis` and each device inverts its own
        examples in `jax.shard_map`.

    Returns:
      float32 [B, num_samples] on librosa's [-1, 1] scale (multiply by 32768 for int16 PCM).
    """
    if db.shape[1] != cfg.num_frames(num_samples):
        raise ValueError(f"A log-mel of {db.shape[1]} frames cannot become {num_samples} samples "
                         f"(hop {cfg.hop_length} gives {cfg.num_frames(num_samples)} frames).")
    if phase_audio is None and key is None:
        raise ValueError("Give a key (random initial phase) or phase_audio (its phase).")
    keys = None if phase_audio is not None else jax.random.split(key, db.shape[0])
    fn = functools.partial(_invert_local, cfg=cfg, vcfg=vcfg, num_samples=num_samples)
    if mesh is not None:
        spec = P(batch_axis)
        fn = jax.shard_map(fn, mesh=mesh, in_specs=(spec, spec, spec), out_specs=spec)
    return fn(db, keys, phase_audio)
