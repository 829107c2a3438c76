"""On-device augmentation, drawn from a key so that a resumed run draws the same numbers.

All ops are per example (iota comparisons, no gathers), so they keep the batch sharding.
"""
import jax
import jax.numpy as jnp


def random_gain(key: jax.Array, audio: jax.Array, max_db: float) -> jax.Array:
    """Scales each waveform [B, N] by a gain uniform in [-max_db, max_db] dB."""
    if max_db <= 0:
        return audio
    db = jax.random.uniform(key, (audio.shape[0], 1), minval=-max_db, maxval=max_db)
    return audio * 10.0 ** (db / 20.0)


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
