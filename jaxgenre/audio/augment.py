"""On-device augmentation, drawn from a key so that a resumed run draws the same numbers.

All ops are per example (iota comparisons, dense resampling weights, and for DiffAugment's
roll a per-example gather), so they keep the batch sharding.
"""
import math

import jax
import jax.numpy as jnp


def random_gain(key: jax.Array, audio: jax.Array, max_db: float) -> jax.Array:
    """Scales each waveform [B, N] by a gain uniform in [-max_db, max_db] dB."""
    if max_db <= 0:
        return audio
    db = jax.random.uniform(key, (audio.shape[0], 1), minval=-max_db, maxval=max_db)
    return audio * 10.0 ** (db / 20.0)


def stretch_and_shift(key: jax.Array, x: jax.Array, max_stretch: float,
                      max_shift: float) -> jax.Array:
    """Random time stretch and frequency shift of spectrograms [B, T, F, C] (same shape out).

    Each example is resampled (linear interpolation, `jax.image.scale_and_translate`) by a time
    factor log-uniform in [1 / (1 + max_stretch), 1 + max_stretch] from a random window, and
    moved by a uniform [-max_shift, max_shift] mel bands: a cheap stand-in for tempo and pitch
    changes (BYOL-A's random resized crop, Niizumi et al. 2021). Edges are filled by
    reflection in time and by the edge band in frequency, never by silence.
    """
    if max_stretch <= 0 and max_shift <= 0:
        return x
    batch, frames, bands = x.shape[:3]
    pad_t = math.ceil(frames * max_stretch / 2) + 1
    pad_f = math.ceil(max_shift) + 1
    ks, kt, kf = jax.random.split(key, 3)
    log_max = math.log1p(max(max_stretch, 0.0))
    scale_t = jnp.exp(jax.random.uniform(ks, (batch,), minval=-log_max, maxval=log_max))
    window = frames / scale_t  # input frames the output covers
    start_t = jax.random.uniform(kt, (batch,)) * (frames + 2 * pad_t - window)
    start_f = pad_f + jax.random.uniform(kf, (batch,), minval=-max_shift, maxval=max_shift)
    scale = jnp.stack([scale_t, jnp.ones_like(scale_t)], axis=1)  # [B, 2]
    translation = -jnp.stack([start_t * scale_t, start_f], axis=1)

    def resample(image, s, t):  # one example [T, F, C]; padded here, off the batch axis
        image = jnp.pad(image, ((pad_t, pad_t), (0, 0), (0, 0)), mode="reflect")
        image = jnp.pad(image, ((0, 0), (pad_f, pad_f), (0, 0)), mode="edge")
        return jax.image.scale_and_translate(image, (frames, bands, x.shape[3]), (0, 1), s, t,
                                             method="linear", antialias=False)
    return jax.vmap(resample)(x, scale, translation).astype(x.dtype)


def _masks(key, batch: int, length: int, count: int, width: int) -> jax.Array:
    """[B, length] bool, True inside `count` random bands of width 0..width per example."""
    k1, k2 = jax.random.split(key)
    widths = jax.random.randint(k1, (batch, count, 1), 0, width + 1)
    starts = (jax.random.uniform(k2, (batch, count, 1)) * (length - widths)).astype(jnp.int32)
    pos = jnp.arange(length)[None, None, :]
    return jnp.any((pos >= starts) & (pos < starts + widths), axis=1)


def spec_augment(key: jax.Array, x: jax.Array, freq_masks: int, freq_width: int,
                 time_masks: int, time_width: int) -> jax.Array:
    """SpecAugment (Park et al. 2019) time and frequency masks on [B, T, F, C]; masked = 0."""
    batch, frames, bands = x.shape[:3]
    kf, kt = jax.random.split(key)
    mask = jnp.zeros((batch, frames, bands), bool)
    if freq_masks and freq_width:
        mask |= _masks(kf, batch, bands, freq_masks, min(freq_width, bands))[:, None, :]
    if time_masks and time_width:
        mask |= _masks(kt, batch, frames, time_masks, min(time_width, frames))[:, :, None]
    return jnp.where(mask[..., None], 0.0, x)


DIFF_AUGMENT = ("roll", "cutout", "gain")


def diff_augment(key: jax.Array, x: jax.Array, policy: tuple[str, ...] | list[str],
                 gain: float = 0.15) -> jax.Array:
    """DiffAugment (Zhao et al. 2020) for a discriminator's log-mel inputs [B, T, M, C].

    Differentiable in `x` (the draws are constants), so G's gradient passes through; the same
    policy on D's real and generated inputs keeps D from memorising a few hundred clips.
    `policy` names any of: "roll" (a circular time shift per example: where a clip's events sit
    is not its genre), "cutout" (one time span of up to 1/4 of the frames and one band span of
    up to 1/4 of the bands set to 0, the scaled input's middle level), "gain" (a level offset
    uniform in [-gain, gain] per example, in the scaled input's units). Returns x's shape and
    dtype.
    """
    unknown = set(policy) - set(DIFF_AUGMENT)
    if unknown:
        raise ValueError(f"Unknown DiffAugment op(s) {sorted(unknown)}; valid: "
                         f"{', '.join(DIFF_AUGMENT)}.")
    batch, frames, bands = x.shape[:3]
    k_roll, k_cut, k_gain = jax.random.split(key, 3)
    if "roll" in policy:
        shifts = jax.random.randint(k_roll, (batch,), 0, frames)
        x = jax.vmap(lambda e, s: jnp.roll(e, s, axis=0))(x, shifts)
    if "cutout" in policy:
        x = spec_augment(k_cut, x, 1, max(bands // 4, 1), 1, max(frames // 4, 1))
    if "gain" in policy:
        x = x + jax.random.uniform(k_gain, (batch,) + (1,) * (x.ndim - 1), x.dtype, -gain, gain)
    return x


def mixup(key: jax.Array, x: jax.Array, labels: jax.Array, alpha: float):
    """Mixup (Zhang et al. 2018) of each example with its neighbour in the batch.

    Args:
      x: model inputs [B, ...]; labels: soft labels [B, C].
    Returns:
      (mixed x, mixed labels); one mixing weight per example, lambda >= 0.5 so that each
      example's own label dominates.
    """
    if alpha <= 0:
        return x, labels
    lam = jax.random.beta(key, alpha, alpha, (x.shape[0],))
    lam = jnp.maximum(lam, 1.0 - lam)
    lx = lam.reshape((-1,) + (1,) * (x.ndim - 1))
    return (lx * x + (1 - lx) * jnp.roll(x, 1, axis=0),
            lam[:, None] * labels + (1 - lam[:, None]) * jnp.roll(labels, 1, axis=0))
