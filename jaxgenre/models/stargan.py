"""Genre style transfer on log-mel spectrograms: one conditional generator for every genre, a
multi-task discriminator, and the latent genre classifier of the autoencoder baseline.

Spectrograms are [B, T, M, 1] float32 (the fixed-reference log-mel, scaled as `jaxgenre.tasks.gan`
does): time T any length, M mel bands. The generator is fully convolutional (two stride-2
down-samplings, so T and M are padded to multiples of 4 inside and cropped back), and its
target genre enters every decoder block by AdaIN from a learned embedding (StarGAN v2's way).
"""
import jax
import jax.numpy as jnp
from flax import nnx

from jaxgenre.audio import ltas
from jaxgenre.models.ops.spectral_norm import SNConv, SNLinear


def _leaky(x):
    return jax.nn.leaky_relu(x, 0.2)


def _instance_norm(x: jax.Array, eps: float = 1e-5) -> jax.Array:
    """Normalises each example's channel over time and frequency (float32 statistics)."""
    x32 = x.astype(jnp.float32)
    mean = x32.mean(axis=(1, 2), keepdims=True)
    var = x32.var(axis=(1, 2), keepdims=True)
    return ((x32 - mean) * jax.lax.rsqrt(var + eps)).astype(x.dtype)


class AdaIN(nnx.Module):
    """Instance norm whose scale and shift come from a style vector; with style_dim=0, a plain
    instance norm with learned affine parameters."""

    def __init__(self, channels: int, style_dim: int, *, rngs: nnx.Rngs):
        self.style_dim = style_dim
        if style_dim:
            # Zero init: every genre starts at the identity affine map.
            self.fc = nnx.Linear(style_dim, 2 * channels, kernel_init=nnx.initializers.zeros,
                                 rngs=rngs)
        else:
            self.scale = nnx.Param(jnp.zeros((channels,)))
            self.shift = nnx.Param(jnp.zeros((channels,)))

    def __call__(self, x: jax.Array, style: jax.Array | None) -> jax.Array:
        if self.style_dim:
            gamma, beta = jnp.split(self.fc(style), 2, axis=-1)  # [B, C] each
            gamma, beta = gamma[:, None, None, :], beta[:, None, None, :]
        else:
            gamma, beta = self.scale.value, self.shift.value
        return (1.0 + gamma).astype(x.dtype) * _instance_norm(x) + beta.astype(x.dtype)


class ResBlock(nnx.Module):
    """x + conv(act(norm(conv(act(norm(x)))))); norms conditioned on a style when style_dim."""

    def __init__(self, channels: int, style_dim: int, *, dtype, rngs: nnx.Rngs):
        self.norm1 = AdaIN(channels, style_dim, rngs=rngs)
        self.conv1 = nnx.Conv(channels, channels, (3, 3), dtype=dtype, rngs=rngs)
        self.norm2 = AdaIN(channels, style_dim, rngs=rngs)
        self.conv2 = nnx.Conv(channels, channels, (3, 3), dtype=dtype, rngs=rngs)

    def __call__(self, x, style=None):
        h = self.conv1(_leaky(self.norm1(x, style)))
        return x + self.conv2(_leaky(self.norm2(h, style)))


def _upsample(x: jax.Array) -> jax.Array:
    """Nearest-neighbour x2 in time and frequency (then a conv: no checkerboard artefacts)."""
    return jnp.repeat(jnp.repeat(x, 2, axis=1), 2, axis=2)


class Generator(nnx.Module):
    """G(x [B, T, M, 1], target genre int32 [B]) -> [B, T, M, 1] float32.

    encode: stem, two stride-2 convs, `encoder_blocks` residual blocks (not conditioned) ->
    latent [B, ceil(T/4), ceil(M/4), 4 * channels]. decode: `decoder_blocks` AdaIN residual
    blocks conditioned on the target's embedding, two up-samplings, a 1-channel head. With
    `skip` the output is x + decode(...) and the head starts at zero, so the untrained generator
    is the identity and content survives by construction (the autoencoder baseline sets
    skip=False: everything passes through the latent).

    eq_prior > 0: the input first has its long-term average spectrum (LTAS: the mean power per
    band over time) moved `eq_prior` of the way to the target genre's, `genre_ltas` [C, n_mels]
    (in generator units; set from the training split by the task, then trained with the rest),
    and the network works on that. At eq_prior 1 the untrained generator is the eq baseline
    (`jaxgenre.transfer.methods.Eq`), which the network refines; the shift is exactly undone by
    converting back, so cycle and identity terms measured against `prior(x, source)` stay fair.
    `db_scale` (the dB per generator unit) turns unit means into power means.
    """

    def __init__(self, num_classes: int, *, dtype=jnp.float32, rngs: nnx.Rngs, channels: int = 32,
                 encoder_blocks: int = 2, decoder_blocks: int = 4, style_dim: int = 64,
                 skip: bool = True, eq_prior: float = 0.0, n_mels: int = 0,
                 db_scale: float = 40.0):
        c = channels
        self.dtype, self.skip = dtype, skip
        self.eq_prior, self.db_scale = eq_prior, db_scale
        if eq_prior:
            if n_mels < 1:
                raise ValueError("The eq prior needs the generator's n_mels (one gain per band).")
            self.genre_ltas = nnx.Param(jnp.zeros((num_classes, n_mels)))
        self.embed = nnx.Embed(num_classes, style_dim, rngs=rngs)
        self.stem = nnx.Conv(1, c, (3, 3), dtype=dtype, rngs=rngs)
        self.down1 = nnx.Conv(c, 2 * c, (4, 4), strides=2, dtype=dtype, rngs=rngs)
        self.norm1 = AdaIN(2 * c, 0, rngs=rngs)
        self.down2 = nnx.Conv(2 * c, 4 * c, (4, 4), strides=2, dtype=dtype, rngs=rngs)
        self.norm2 = AdaIN(4 * c, 0, rngs=rngs)
        self.encoder = nnx.List([ResBlock(4 * c, 0, dtype=dtype, rngs=rngs)
                                 for _ in range(encoder_blocks)])
        self.decoder = nnx.List([ResBlock(4 * c, style_dim, dtype=dtype, rngs=rngs)
                                 for _ in range(decoder_blocks)])
        self.up1 = nnx.Conv(4 * c, 2 * c, (3, 3), dtype=dtype, rngs=rngs)
        self.norm3 = AdaIN(2 * c, style_dim, rngs=rngs)
        self.up2 = nnx.Conv(2 * c, c, (3, 3), dtype=dtype, rngs=rngs)
        self.norm4 = AdaIN(c, style_dim, rngs=rngs)
        head_init = nnx.initializers.zeros if skip else nnx.initializers.lecun_normal()
        self.head = nnx.Conv(c, 1, (3, 3), kernel_init=head_init, dtype=dtype, rngs=rngs)

    def encode(self, x: jax.Array) -> jax.Array:
        """x [B, T, M, 1] with T, M multiples of 4 -> latent [B, T/4, M/4, 4c]."""
        h = self.stem(x.astype(self.dtype))
        h = _leaky(self.norm1(self.down1(_leaky(h)), None))
        h = _leaky(self.norm2(self.down2(h), None))
        for block in self.encoder:
            h = block(h)
        return h

    def decode(self, z: jax.Array, target: jax.Array) -> jax.Array:
        """latent [B, T/4, M/4, 4c], target int32 [B] -> [B, T, M, 1] float32."""
        style = self.embed(target)
        h = z
        for block in self.decoder:
            h = block(h, style)
        h = _leaky(self.norm3(self.up1(_upsample(h)), style))
        h = _leaky(self.norm4(self.up2(_upsample(h)), style))
        return self.head(h).astype(jnp.float32)

    def prior(self, x: jax.Array, target: jax.Array) -> jax.Array:
        """x [B, T, M, 1] with its LTAS moved `eq_prior` of the way to the target genre's
        (x itself when eq_prior is 0)."""
        if not self.eq_prior:
            return x
        gain = self.genre_ltas.value[target] - ltas_units(x[..., 0], self.db_scale)  # [B, M]
        return x + self.eq_prior * gain[:, None, :, None].astype(x.dtype)

    def __call__(self, x: jax.Array, target: jax.Array) -> jax.Array:
        x = self.prior(x, target)
        t, m = x.shape[1], x.shape[2]
        padded = pad_to_multiple(x, 4)
        out = self.decode(self.encode(padded), target)
        if self.skip:
            out = padded.astype(jnp.float32) + out
        return out[:, :t, :m]


def ltas_units(x: jax.Array, db_scale: float) -> jax.Array:
    """The LTAS of [B, T, M] in generator units ((dB - offset) / db_scale; the offset passes
    through a power mean unchanged): [B, M] float32."""
    return ltas.ltas_db(x * db_scale) / db_scale


def pad_to_multiple(x: jax.Array, k: int) -> jax.Array:
    """Edge-pads axes 1 and 2 of [B, T, M, C] up to multiples of k."""
    return jnp.pad(x, ((0, 0), (0, -x.shape[1] % k), (0, -x.shape[2] % k), (0, 0)), mode="edge")


class Discriminator(nnx.Module):
    """D(x [B, T, M, 1], genre int32 [B]) -> real/fake logit [B] float32 for that genre.

    One output per genre (multi-task, StarGAN v2-VC's D): each genre's head only judges clips
    said to be of that genre. Spectral norm on every layer, no BatchNorm (its batch statistics
    would tell real halves from fake ones). `update=True` (training) refreshes the power-iteration
    vectors.
    """

    def __init__(self, num_classes: int, *, dtype=jnp.float32, rngs: nnx.Rngs,
                 channels: int = 32, num_layers: int = 4):
        self.dtype = dtype
        widths = [channels * 2 ** min(i, 3) for i in range(num_layers + 1)]
        self.stem = SNConv(1, widths[0], 3, rngs=rngs)
        self.blocks = nnx.List([SNConv(widths[i], widths[i + 1], 4, strides=2, rngs=rngs)
                                for i in range(num_layers)])
        self.head = SNLinear(widths[-1], num_classes, rngs=rngs)

    def __call__(self, x: jax.Array, genre: jax.Array, update: bool = False) -> jax.Array:
        h = _leaky(self.stem(x.astype(self.dtype), update))
        for block in self.blocks:
            h = _leaky(block(h, update))
        logits = self.head(h.astype(jnp.float32).mean(axis=(1, 2)), update)  # [B, C]
        return jnp.take_along_axis(logits, genre[:, None], axis=1)[:, 0]


class LatentClassifier(nnx.Module):
    """Genre logits [B, C] from a generator latent [B, T', M', D]: the domain-confusion
    adversary of the autoencoder baseline (the universal music translation network's)."""

    def __init__(self, num_classes: int, *, dtype=jnp.float32, rngs: nnx.Rngs,
                 in_features: int = 128, channels: int = 64):
        self.conv = nnx.Conv(in_features, channels, (3, 3), dtype=dtype, rngs=rngs)
        self.dense = nnx.Linear(channels, num_classes, rngs=rngs)

    def __call__(self, z: jax.Array) -> jax.Array:
        h = _leaky(self.conv(z)).astype(jnp.float32).mean(axis=(1, 2))
        return self.dense(h)
