"""3x3 max pooling as nine shifted maxima with a hand-written gradient on CPU; XLA's
`reduce_window` elsewhere.

Why: XLA:CPU differentiates `reduce_window` max by pairing every input with its index (an
`iota` the size of the input) and scattering the gradient back; in a profile of ResNet-18's
train step (batch 32 on [130, 128, 1] log-mels, jax 0.10.2, 2-core EPYC) its one max pool over
[32, 65, 64, 64] cost 166 of 1223 ms of thunk time (reduce-window 66, iota 94, scatter 6), more
than any convolution. Here the forward pass is the maximum of the nine shifted (strided) views,
fused into one loop, and the gradient goes to each window's first maximum in row-major order
(PyTorch's choice; XLA's may pick another of equal inputs, an equally valid subgradient): per
view, the output gradient where that view holds the window's maximum and no earlier view did,
placed back by a strided pad. GPU and TPU keep `reduce_window` (`lax.platform_dependent`, as
`conv.py` and `depthwise.py`).
"""
import functools

import jax
import jax.numpy as jnp
from flax import nnx

from jaxgenre.models.ops.conv import same_padding, shifted_views

_K = 3


def _geometry(x_shape, stride: int, padding):
    """((top, bottom), (left, right)) padding and the output height and width."""
    if padding == "SAME":
        (oh, ph), (ow, pw) = (same_padding(n, _K, stride) for n in x_shape[1:3])
        return ph, pw, oh, ow
    ph, pw = padding
    out = lambda n, p: (n + p[0] + p[1] - _K) // stride + 1
    return ph, pw, out(x_shape[1], ph), out(x_shape[2], pw)


def _views(x, stride, padding):
    """(the -inf-padded input, its nine shifted views, `_geometry`)."""
    geometry = ph, pw, oh, ow = _geometry(x.shape, stride, padding)
    xp = jnp.pad(x, ((0, 0), ph, pw, (0, 0)), constant_values=-jnp.inf)
    return xp, list(shifted_views(xp, (_K, _K), stride, oh, ow)), geometry


@functools.partial(jax.custom_vjp, nondiff_argnums=(1, 2))
def max_pool3x3(x: jax.Array, stride: int, padding) -> jax.Array:
    """Max over 3x3 windows of x [B, H, W, C] with `stride`; padding 'SAME' or
    ((top, bottom), (left, right)) (padded with -inf) -> [B, oh, ow, C]."""
    return functools.reduce(jnp.maximum, _views(x, stride, padding)[1])


def _fwd(x, stride, padding):
    y = max_pool3x3(x, stride, padding)
    return y, (x, y)


def _bwd(stride, padding, residuals, g):
    x, y = residuals
    xp, views, (ph, pw, oh, ow) = _views(x, stride, padding)
    hp, wp = xp.shape[1:3]
    zero = jnp.zeros((), g.dtype)
    taken = jnp.zeros(y.shape, bool)
    dxp = jnp.zeros(xp.shape, g.dtype)
    for t, view in enumerate(views):
        i, j = divmod(t, _K)
        first = (view == y) & ~taken
        taken = taken | first
        dxp = dxp + jax.lax.pad(jnp.where(first, g, zero), zero, (
            (0, 0, 0), (i, hp - i - (oh - 1) * stride - 1, stride - 1),
            (j, wp - j - (ow - 1) * stride - 1, stride - 1), (0, 0, 0)))
    return (dxp[:, ph[0]:ph[0] + x.shape[1], pw[0]:pw[0] + x.shape[2], :],)


max_pool3x3.defvjp(_fwd, _bwd)


def max_pool(x: jax.Array, stride: int, padding) -> jax.Array:
    """3x3 max pooling: `max_pool3x3` on CPU, `nnx.max_pool` (reduce_window) elsewhere; the
    same results."""
    return jax.lax.platform_dependent(
        x, cpu=lambda x: max_pool3x3(x, stride, padding),
        default=lambda x: nnx.max_pool(x, (_K, _K), strides=(stride, stride), padding=padding))
