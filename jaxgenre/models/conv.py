"""2D convolution whose kernel gradient on CPU is matrix products over shifted views.

Why: XLA:CPU computes a convolution's kernel gradient as a convolution whose "kernel" is the
whole output gradient, which is slow for large feature maps and dominated ResNet-18's train
step. Gathering the kh * kw shifted input views side by side (im2col) turns it into a
[kh * kw * C_in, N] x [N, C_out] product. Done at once over the batch, the gathered columns
(78 MB in ResNet-18's first stage) cost more memory traffic than the product; done over
chunks of examples whose columns stay near 4 MB (cache-sized), summed, it runs 1.5-3x faster
than both (`benchmarks/conv_grad.py` measures all three, `benchmarks/conv_layers.py` every
pass against PyTorch's). The forward pass and the input gradient stay XLA's; other platforms
keep XLA's kernel gradient (`lax.platform_dependent`): their convolution libraries do not have
this problem.
"""
import functools

import jax
import jax.numpy as jnp
from flax import nnx

_DIMS = ("NHWC", "HWIO", "NHWC")
# im2col columns gathered per chunk of examples. In a one-off sweep of 1, 2, 4, 8 examples per
# chunk on three ResNet-18 layers (2-core EPYC) the fastest chunks held 2.5-5 MB of columns;
# benchmarks/conv_grad.py times this default against XLA's and the whole batch at once.
CHUNK_BYTES = 4 << 20


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
                       padding: str = "SAME", chunk_bytes: int = CHUNK_BYTES) -> jax.Array:
    """d loss / d kernel [kh, kw, C_in, C_out] from input x [B, H, W, C_in] and output
    gradient g [B, oh, ow, C_out]: per chunk of examples (the most that divide B with at most
    `chunk_bytes` of columns, at least one), one matrix product over the stacked shifted views;
    the chunks' products summed in float32 (`lax.scan`). Returns float32."""
    kh, kw, c_in, c_out = kernel_shape
    oh, ph = conv_padding(x.shape[1], kh, stride, padding)
    ow, pw = conv_padding(x.shape[2], kw, stride, padding)
    batch = x.shape[0]
    per_example = oh * ow * kh * kw * c_in * x.dtype.itemsize
    chunk = max([c for c in range(1, batch + 1) if batch % c == 0 and c * per_example <= chunk_bytes],
                default=1)

    def product(x, g):
        xp = jnp.pad(x, ((0, 0), ph, pw, (0, 0)))
        cols = jnp.concatenate(list(shifted_views(xp, (kh, kw), stride, oh, ow)), axis=-1)
        return jax.lax.dot_general(cols.reshape(-1, kh * kw * c_in), g.reshape(-1, c_out),
                                   (((0,), (0,)), ((), ())), preferred_element_type=jnp.float32)

    if chunk == batch:
        return product(x, g).reshape(kernel_shape)
    chunks = lambda a: a.reshape(batch // chunk, chunk, *a.shape[1:])
    dk, _ = jax.lax.scan(lambda acc, xg: (acc + product(*xg), None),
                         jnp.zeros((kh * kw * c_in, c_out), jnp.float32), (chunks(x), chunks(g)))
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
