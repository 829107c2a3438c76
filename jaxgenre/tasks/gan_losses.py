"""Adversarial losses and gradient penalties, chosen by name (`config.gan.loss`), and the
harmony and rhythm a conversion keeps (`chroma_kept`, `onset_envelope_l1`).

The adversarial ones take discriminator logits as float32 [B] and return float32 scalars (means
over the batch).
"""
import jax
import jax.numpy as jnp
import numpy as np
import optax

from jaxgenre.audio import chroma, frontend

LOSSES = ("hinge", "nonsaturating", "wgan_gp")


def discriminator_loss(kind: str, real: jax.Array, fake: jax.Array) -> jax.Array:
    """What D minimises, given its logits on real and on generated inputs."""
    if kind == "hinge":
        return jax.nn.relu(1.0 - real).mean() + jax.nn.relu(1.0 + fake).mean()
    if kind == "nonsaturating":
        return jax.nn.softplus(-real).mean() + jax.nn.softplus(fake).mean()
    if kind == "wgan_gp":
        return fake.mean() - real.mean()
    raise ValueError(f"Unknown gan.loss {kind!r}; valid: {', '.join(LOSSES)}.")


def generator_loss(kind: str, fake: jax.Array) -> jax.Array:
    """What G minimises, given D's logits on its outputs."""
    if kind == "nonsaturating":
        return jax.nn.softplus(-fake).mean()
    if kind in ("hinge", "wgan_gp"):
        return -fake.mean()
    raise ValueError(f"Unknown gan.loss {kind!r}; valid: {', '.join(LOSSES)}.")


def confusion_loss(logits: jax.Array) -> jax.Array:
    """Cross-entropy of an adversary's genre logits [B, C] to the uniform distribution, mean
    over the batch: least (log C) when the adversary cannot tell any genre from the latent.
    Bounded below, unlike the adversary's negated cross-entropy, which a confidently wrong
    adversary (that still carries the genre) would minimise without end."""
    uniform = jnp.full(logits.shape, 1.0 / logits.shape[-1], logits.dtype)
    return optax.softmax_cross_entropy(logits, uniform).mean()


def _input_grad_sq_norm(d_fn, x: jax.Array) -> jax.Array:
    """||d D(x) / dx||^2 per example [B]: D's logits are per example, so the gradient of their
    sum gives each example its own gradient."""
    grads = jax.grad(lambda v: d_fn(v).sum())(x)
    return jnp.sum(jnp.square(grads.astype(jnp.float32)), axis=tuple(range(1, x.ndim)))


def r1_penalty(d_fn, real: jax.Array) -> jax.Array:
    """R1 (Mescheder et al. 2018): mean ||grad_x D(x)||^2 / 2 at real inputs."""
    return 0.5 * _input_grad_sq_norm(d_fn, real).mean()


def gradient_penalty(d_fn, real: jax.Array, fake: jax.Array, key: jax.Array) -> jax.Array:
    """WGAN-GP (Gulrajani et al. 2017): mean (||grad D||_2 - 1)^2 at random interpolates."""
    eps = jax.random.uniform(key, (real.shape[0],) + (1,) * (real.ndim - 1))
    mixed = eps * real + (1.0 - eps) * fake
    norm = jnp.sqrt(_input_grad_sq_norm(d_fn, mixed) + 1e-12)
    return jnp.square(norm - 1.0).mean()


def band_to_bin(cfg: frontend.MelConfig) -> np.ndarray:
    """Interpolates a per-band value to the STFT bins: [n_mels, n_fft // 2 + 1] float32, each
    bin the mean of the bands whose filters cover it, weighted by the filters (a bin no filter
    covers gets 0)."""
    fb = frontend.mel_filterbank(cfg).T  # [M, F]
    return (fb / np.maximum(fb.sum(axis=0, keepdims=True), 1e-12)).astype(np.float32)


def chroma_kept(power: jax.Array, gain_db: jax.Array, cfg: frontend.MelConfig) -> jax.Array:
    """Chroma similarity of a log-mel edit, estimated without a vocoder: [B] float32.

    The vocoder turns an edited log-mel back into audio from the input's own STFT phase, so the
    output's spectrum is close to the input's with each bin scaled by its bands' gain. That
    spectrum's chroma against the input's, frame by frame as `chroma.chroma_similarity`, is a
    differentiable measure of the harmony the edit keeps.

    Args:
      power: the input's |STFT|^2 [B, T, F] (`frontend.power_spectrogram`).
      gain_db: the edit, output minus input log-mel in dB [B, T, n_mels].
    """
    bins_db = jnp.matmul(gain_db, band_to_bin(cfg), precision=cfg.precision)
    # The cosine is blind to each frame's scale, so a frame's boosts are measured from its
    # largest: 10 ** (gain / 10) never exceeds 1 and cannot overflow. Unscaled, a frame boosted
    # by 160 dB or more (a diverging generator's edge frames) squares past float32 into a
    # cosine of 0 with no gradient, and past 350 dB into NaN: the dev-set run stopped at step
    # 1,231 with only `chroma_kept` and what it feeds NaN.
    top_db = jax.lax.stop_gradient(jnp.maximum(bins_db.max(axis=-1, keepdims=True), 0.0))
    chroma_fb = frontend.chroma_filterbank(cfg)
    before = jnp.matmul(power, chroma_fb, precision=cfg.precision)
    after = jnp.matmul(power * 10.0 ** ((bins_db - top_db) / 10.0), chroma_fb,
                       precision=cfg.precision)
    return chroma.chroma_similarity(before, after)


def onset_envelope(db: jax.Array, floor_db: float = 0.1) -> jax.Array:
    """The spectral-flux onset envelope of log-mels [B, T, M] (dB): [B, T - 1] float32.

    A flux of dB differences is already blind to a constant gain or EQ; each clip's envelope
    is also divided by its own mean (plus `floor_db`, which keeps a silent clip's finite), so
    onsets made uniformly stronger or softer keep the same envelope: what counts is when they
    come, not how hard."""
    flux = jax.nn.relu(db[:, 1:] - db[:, :-1]).mean(axis=-1)
    return flux / (flux.mean(axis=1, keepdims=True) + floor_db)


def onset_envelope_l1(x_db: jax.Array, y_db: jax.Array) -> jax.Array:
    """Rhythm kept, as StarGANv2-VC keeps F0: mean L1 [B] float32 between the input's and the
    output's normalised onset envelopes (log-mels [B, T, M] in dB)."""
    return jnp.abs(onset_envelope(y_db) - onset_envelope(x_db)).mean(axis=1)
