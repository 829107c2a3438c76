"""2D convolution whose kernel gradient on CPU is one matrix product over shifted views.

Why: XLA:CPU computes a convolution's kernel gradient as a convolution whose "kernel" is the
whole output gradient; for large feature maps (ResNet's first stage: [32, 33, 32, 64]) that runs
at 3-4 GFLOP/s on a 2-core EPYC, against 50+ for the forward pass, and dominated ResNet-18's
train step. Gathering the kh * kw shifted input views side by side (im2col) turns it into a
single [kh * kw * C_in, N] x [N, C_out] product (`benchmarks/conv_grad.py` measures both).
The forward pass and the input gradient stay XLA's; other platforms keep XLA's kernel gradient
(`lax.platform_dependent`), since their convolution libraries do not have this problem.
"""
import functools

import jax
import jax.numpy as jnp
from flax import nnx

_DIMS = ("NHWC", "HWIO", "NHWC")


def same_padding(n: int, k: int, stride: int) -> tuple[int, tuple[int, int]]:
    """Output length and (before, after) padding of 'SAME' for input length n, kernel k."""
    out = -(-n // stride)
    total = max((out - 1) * stride + k - n, 0)
    return out, (total // 2, total - total // 2)


def conv_padding(n: int, k: int, stride: int, padding: str) -> tuple[int, tuple[int, int]]:
    """Output length and (before, after) padding of `padding` ('SAME' or 'VALID')."""
    return same_padding(n, k, stride) if padding == "SAME" else ((n - k) // stride + 1, (0, 0))


def shifted_views(xp: jax.Array, kernel_hw: tuple[int, int], stride: int, oh: int, ow: int):
    """The kh * kw shifted (and strided) [B, oh, ow, C] views of a padded input, in kernel
    order (i, j): view (i, j) times kernel[i, j] summed over (i, j) is the convolution."""
    span_h, span_w = (oh - 1) * stride + 1, (ow - 1) * stride + 1
    for i in range(kernel_hw[0]):
        for j in range(kernel_hw[1]):
            yield xp[:, i:i + span_h:stride, j:j + span_w:stride, :]


def xla_conv(x: jax.Array, kernel: jax.Array, stride: int, padding: str = "SAME") -> jax.Array:
    """XLA's convolution, NHWC x HWIO -> NHWC; padding 'SAME' or 'VALID'."""
    return jax.lax.conv_general_dilated(x, kernel, (stride, stride), padding,
                                        dimension_numbers=_DIMS)


def kernel_grad_im2col(x: jax.Array, g: jax.Array, kernel_shape, stride: int,
                       padding: str = "SAME") -> jax.Array:
    """d loss / d kernel [kh, kw, C_in, C_out] from input x [B, H, W, C_in] and output
    gradient g [B, oh, ow, C_out], as one matrix product over the stacked shifted views."""
    kh, kw, c_in, c_out = kernel_shape
    oh, ph = conv_padding(x.shape[1], kh, stride, padding)
    ow, pw = conv_padding(x.shape[2], kw, stride, padding)
    xp = jnp.pad(x, ((0, 0), ph, pw, (0, 0)))
    cols = jnp.concatenate(list(shifted_views(xp, (kh, kw), stride, oh, ow)), axis=-1)
    dk = cols.reshape(-1, kh * kw * c_in).T @ g.reshape(-1, c_out)
    return dk.reshape(kernel_shape)


@functools.partial(jax.custom_vjp, nondiff_argnums=(2, 3))
def conv2d(x: jax.Array, kernel: jax.Array, stride: int, padding: str = "SAME") -> jax.Array:
    """Convolution: x [B, H, W, C_in], kernel [kh, kw, C_in, C_out] -> [B, oh, ow, C_out]
    (oh = ceil(H / stride) for 'SAME', (H - kh) // stride + 1 for 'VALID'). Equal to
    `lax.conv_general_dilated`."""
    return xla_conv(x, kernel, stride, padding)


def _fwd(x, kernel, stride, padding):
    return xla_conv(x, kernel, stride, padding), (x, kernel)


def _bwd(stride, padding, residuals, g):
    x, kernel = residuals
    _, xla_vjp = jax.vjp(functools.partial(xla_conv, stride=stride, padding=padding), x, kernel)
    dx, xla_dk = xla_vjp(g)
    dk = jax.lax.platform_dependent(
        x, g, cpu=lambda x, g: kernel_grad_im2col(x, g, kernel.shape, stride, padding
                                                  ).astype(kernel.dtype),
        default=lambda x, g: xla_dk)
    return dx, dk


conv2d.defvjp(_fwd, _bwd)


class Conv2D(nnx.Module):
    """Drop-in for `nnx.Conv(in_ch, out_ch, kernel, strides, padding, use_bias=False)` on NHWC
    inputs, padding 'SAME' or 'VALID': the same parameter ('kernel' [kh, kw, C_in, C_out],
    LeCun-normal init)."""

    def __init__(self, in_ch: int, out_ch: int, kernel_size: tuple[int, int], strides: int = 1,
                 padding: str = "SAME", *, dtype=None, rngs: nnx.Rngs):
        init = nnx.initializers.lecun_normal()
        self.kernel = nnx.Param(init(rngs.params(), (*kernel_size, in_ch, out_ch)))
        self.strides, self.padding = strides, padding
        self.dtype = dtype

    def __call__(self, x: jax.Array) -> jax.Array:
        kernel = self.kernel[...]
        if self.dtype is not None:
            x, kernel = x.astype(self.dtype), kernel.astype(self.dtype)
        return conv2d(x, kernel, self.strides, self.padding)
