"""Spectral normalisation as in the paper (Miyato et al. 2018), for discriminators.

The trained `nnx.Param` holds the raw weight W; every call uses W / sigma(W), sigma estimated by
power iteration from a persistent vector u. Unlike `nnx.SpectralNorm` (flax 0.12), nothing is
written back into the Param: gradients flow through W / sigma (with u and v held constant, as the
paper does), and the optimizer updates the raw W. u is a `SpectralVector`: not a Param, so it is
not trained; it is refreshed by one power-iteration step per training call and saved with the
model's other non-Param state (`models.split`).
"""
import jax
import jax.numpy as jnp
from flax import nnx

from jaxgenre.models.ops import conv


class SpectralVector(nnx.Variable):
    """The power-iteration vector u [out_features] of a spectral-normalised weight."""


def _normalise(v: jax.Array, eps: float = 1e-12) -> jax.Array:
    return v / (jnp.linalg.norm(v) + eps)


def normalised_weight(w: jax.Array, u: jax.Array, update: bool) -> tuple[jax.Array, jax.Array]:
    """(W / sigma(W), u after this call).

    w: float32 [..., out]: the last axis is the output axis (conv kernels: [kh, kw, in, out]).
    u: float32 [out]. update: one power-iteration step (training) or the stored u (inference).
    """
    mat = w.reshape(-1, w.shape[-1])  # [K, out]
    u = jax.lax.stop_gradient(u)
    if update:
        u = _normalise(mat.T @ _normalise(mat @ u))
        u = jax.lax.stop_gradient(u)
    v = jax.lax.stop_gradient(_normalise(mat @ u))  # [K]
    sigma = v @ mat @ u
    return w / sigma, u


class SNConv(nnx.Module):
    """2-D convolution (NHWC, 'SAME' padding) with a spectrally normalised kernel."""

    def __init__(self, in_features: int, out_features: int, kernel_size: int, strides: int = 1,
                 *, rngs: nnx.Rngs):
        init = nnx.initializers.lecun_normal()
        self.kernel = nnx.Param(init(rngs.params(), (kernel_size, kernel_size, in_features,
                                                     out_features)))
        self.bias = nnx.Param(jnp.zeros((out_features,)))
        self.u = SpectralVector(_normalise(jax.random.normal(rngs.params(), (out_features,))))
        self.strides = strides

    def __call__(self, x: jax.Array, update: bool = False) -> jax.Array:
        kernel, u = normalised_weight(self.kernel.value, self.u.value, update)
        if update:
            self.u.value = u
        y = conv.space_to_depth_conv(x, kernel.astype(x.dtype), self.strides)
        return y + self.bias.value.astype(x.dtype)


class SNLinear(nnx.Module):
    """A dense layer with a spectrally normalised weight [in, out]."""

    def __init__(self, in_features: int, out_features: int, *, rngs: nnx.Rngs):
        init = nnx.initializers.lecun_normal()
        self.kernel = nnx.Param(init(rngs.params(), (in_features, out_features)))
        self.bias = nnx.Param(jnp.zeros((out_features,)))
        self.u = SpectralVector(_normalise(jax.random.normal(rngs.params(), (out_features,))))

    def __call__(self, x: jax.Array, update: bool = False) -> jax.Array:
        kernel, u = normalised_weight(self.kernel.value, self.u.value, update)
        if update:
            self.u.value = u
        return x @ kernel.astype(x.dtype) + self.bias.value.astype(x.dtype)
