"""Depthwise 3x3 convolution as nine shifted multiply-adds on CPU, with a hand-written
gradient; XLA's grouped convolution elsewhere.

Why: XLA:CPU lowers a grouped convolution (`feature_group_count = channels`) to a slow loop;
`benchmarks/depthwise.py` measures both forms on a MobileNetV2 layer (docs/benchmarks.md).
The forward pass and the input gradient are shifted elementwise products, which XLA fuses into
one loop; the kernel gradient is one variadic reduction. GPU and TPU convolution libraries do
not have the problem, so they keep the grouped convolution (`lax.platform_dependent`, as
`conv.py`). Both accumulate in float32 whatever the input dtype (bfloat16 sums of nine products
lose low bits). Results equal each other to float32 rounding (tests/test_models.py). 'SAME'
padding, any stride.
"""
import functools

import jax
import jax.numpy as jnp
from flax import nnx

from jaxgenre.models.ops.conv import same_padding, shifted_views

_K = 3


def _pad_input(x, stride):
    oh, ph = same_padding(x.shape[1], _K, stride)
    ow, pw = same_padding(x.shape[2], _K, stride)
    return jnp.pad(x, ((0, 0), ph, pw, (0, 0))), oh, ow, ph, pw


@functools.partial(jax.custom_vjp, nondiff_argnums=(2,))
def depthwise_conv3x3(x: jax.Array, kernel: jax.Array, stride: int) -> jax.Array:
    """x [B, H, W, C], kernel [3, 3, 1, C] -> [B, ceil(H / stride), ceil(W / stride), C]."""
    xp, oh, ow, _, _ = _pad_input(x, stride)
    taps = shifted_views(xp, (_K, _K), stride, oh, ow)
    f32 = jnp.float32
    return sum(tap.astype(f32) * k.astype(f32)
               for tap, k in zip(taps, kernel.reshape(_K * _K, -1))).astype(x.dtype)


def grouped_conv3x3(x: jax.Array, kernel: jax.Array, stride: int) -> jax.Array:
    """The same as `depthwise_conv3x3` by XLA's grouped convolution (float32 accumulation)."""
    _, ph = same_padding(x.shape[1], _K, stride)
    _, pw = same_padding(x.shape[2], _K, stride)
    out = jax.lax.conv_general_dilated(
        x, kernel, (stride, stride), (ph, pw), dimension_numbers=("NHWC", "HWIO", "NHWC"),
        feature_group_count=x.shape[-1], preferred_element_type=jnp.float32)
    return out.astype(x.dtype)


def _fwd(x, kernel, stride):
    return depthwise_conv3x3(x, kernel, stride), (x, kernel)


def _bwd(stride, residuals, g):
    x, kernel = residuals
    xp, oh, ow, ph, pw = _pad_input(x, stride)
    hp, wp = xp.shape[1], xp.shape[2]
    # Input gradient: the output gradient dilated by the stride (zeros between), then the same
    # shifted products with the kernel flipped.
    zero = jnp.zeros((), jnp.float32)
    g32 = g.astype(jnp.float32)
    gd = jax.lax.pad(g32, zero, ((0, 0, 0), (_K - 1, hp - (oh - 1) * stride - 1, stride - 1),
                               (_K - 1, wp - (ow - 1) * stride - 1, stride - 1), (0, 0, 0)))
    k32 = kernel.astype(jnp.float32)
    dxp = sum(gd[:, _K - 1 - i:_K - 1 - i + hp, _K - 1 - j:_K - 1 - j + wp, :] * k32[i, j, 0]
              for i in range(_K) for j in range(_K))
    dx = dxp[:, ph[0]:ph[0] + x.shape[1], pw[0]:pw[0] + x.shape[2], :].astype(x.dtype)
    # Kernel gradient: nine reductions done as one variadic reduce, so the input and the output
    # gradient are read once, over (H, W) only: with the batch axis kept, XLA:CPU splits the
    # reduction over both cores (2-3x faster than reducing (B, H, W) at once); the batch sum
    # of [9, B, C] is then negligible.
    products = [tap.astype(jnp.float32) * g32
                for tap in shifted_views(xp, (_K, _K), stride, oh, ow)]
    sums = jax.lax.reduce(products, [zero] * len(products),
                          lambda a, b: [u + v for u, v in zip(a, b)], (1, 2))
    return dx, jnp.stack(sums).sum(1).reshape(kernel.shape).astype(kernel.dtype)


depthwise_conv3x3.defvjp(_fwd, _bwd)


class DepthwiseConv3x3(nnx.Module):
    """Drop-in for `nnx.Conv(C, C, (3, 3), feature_group_count=C, use_bias=False)`.

    Same parameter ('kernel' [3, 3, 1, C], LeCun-normal init), same results.
    """

    def __init__(self, channels: int, strides: int = 1, *, dtype=None, rngs: nnx.Rngs):
        init = nnx.initializers.lecun_normal()
        self.kernel = nnx.Param(init(rngs.params(), (_K, _K, 1, channels)))
        self.strides = strides
        self.dtype = dtype

    def __call__(self, x: jax.Array) -> jax.Array:
        kernel = self.kernel[...]
        if self.dtype is not None:
            x, kernel = x.astype(self.dtype), kernel.astype(self.dtype)
        return jax.lax.platform_dependent(
            x, kernel, cpu=functools.partial(depthwise_conv3x3, stride=self.strides),
            default=functools.partial(grouped_conv3x3, stride=self.strides))
