"""How much harmony two spectrograms share: the measure the transfer evaluator reports and the
GAN's harmony loss term keeps (`jaxgenre.transfer.metrics`, `jaxgenre.tasks.gan_losses`)."""
import jax
import jax.numpy as jnp

from jaxgenre.audio import frontend


def chromagram(audio: jax.Array, mel: frontend.MelConfig) -> jax.Array:
    """float32 [B, N] in [-1, 1] -> chroma [B, T, 12]: |STFT|^2 through librosa's chroma filters."""
    return jnp.matmul(jnp.abs(frontend.stft(audio, mel)) ** 2, frontend.chroma_filterbank(mel),
                      precision=mel.precision)


def chroma_similarity(a: jax.Array, b: jax.Array) -> jax.Array:
    """Chroma a (the input's) and b [B, T, 12] -> [B]: the cosine of each frame's pair, averaged
    over the frames where the input sounds (its chroma norm above 1e-6 of its loudest frame's)."""
    # +1e-30 under the roots: a silent frame has a finite gradient (0) when this is a loss.
    norm_a, norm_b = (jnp.sqrt(jnp.sum(c * c, axis=-1) + 1e-30) for c in (a, b))
    cosine = jnp.sum(a * b, -1) / jnp.maximum(norm_a * norm_b, 1e-12)
    sounding = norm_a > 1e-6 * jnp.max(norm_a, axis=1, keepdims=True)
    return jnp.sum(cosine * sounding, 1) / jnp.maximum(jnp.sum(sounding, 1), 1)
