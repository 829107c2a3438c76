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

`space_to_depth_conv` is the discriminator's convolution (`spectral_norm.SNConv`): on CPU every
derivative of it, of any order (R1 differentiates input gradients again), is a stride-1
convolution or an im2col product, never one of XLA:CPU's generic convolution loops.
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


def space_to_depth_conv(x: jax.Array, kernel: jax.Array, stride: int,
                        padding: str = "SAME") -> jax.Array:
    """Convolution, equal to `xla_conv(x, kernel, stride, padding)`, differentiable any number of
    times through stride-1 convolutions whose kernel gradients are matrix products on CPU.

    Why: a GAN discriminator's R1 or gradient penalty differentiates the input gradient of every
    layer again. XLA:CPU runs those second-order convolutions (dilated for strided layers, and
    the kernel gradients of input gradients for all) as slow generic loops instead of YNNPACK.
    Folding each stride x stride block of the padded input into channels (space to depth), and
    the kernel likewise (zero-padded to a multiple of the stride), leaves a stride-1 'VALID'
    convolution; `valid_conv` keeps every derivative of that one a convolution of the same kind.
    Other platforms keep XLA's convolution.

    x [B, H, W, C_in], kernel [kh, kw, C_in, C_out] -> [B, oh, ow, C_out], as `xla_conv`.
    """
    return jax.lax.platform_dependent(
        x, kernel, cpu=lambda x, k: _space_to_depth_conv(x, k, stride, padding),
        default=lambda x, k: xla_conv(x, k, stride, padding))


def _space_to_depth_conv(x, kernel, stride, padding):
    s = stride
    kh, kw, c_in, c_out = kernel.shape
    b, h, w, _ = x.shape
    oh, ph = conv_padding(h, kh, s, padding)
    ow, pw = conv_padding(w, kw, s, padding)
    kh2, kw2 = -(-kh // s), -(-kw // s)  # the folded kernel's size
    need_h, need_w = (oh + kh2 - 1) * s, (ow + kw2 - 1) * s  # padded input the outputs read
    xp = jnp.pad(x, ((0, 0), (ph[0], max(need_h - h - ph[0], 0)),
                     (pw[0], max(need_w - w - pw[0], 0)), (0, 0)))[:, :need_h, :need_w]
    xs = xp.reshape(b, need_h // s, s, need_w // s, s, c_in).transpose(0, 1, 3, 2, 4, 5)
    ks = jnp.pad(kernel, ((0, kh2 * s - kh), (0, kw2 * s - kw), (0, 0), (0, 0)))
    ks = ks.reshape(kh2, s, kw2, s, c_in, c_out).transpose(0, 2, 1, 3, 4, 5)
    return valid_conv(xs.reshape(b, need_h // s, need_w // s, s * s * c_in),
                      ks.reshape(kh2, kw2, s * s * c_in, c_out))


@jax.custom_vjp
def valid_conv(x: jax.Array, kernel: jax.Array) -> jax.Array:
    """Stride-1 'VALID' convolution [B, H, W, C_in] x [kh, kw, C_in, C_out] ->
    [B, H - kh + 1, W - kw + 1, C_out], whose input gradient is again a `valid_conv` (of the
    padded output gradient with the flipped kernel) and whose kernel gradient is
    `kernel_grad_im2col`, so derivatives of derivatives stay off XLA:CPU's slow paths. The CPU
    branch of `space_to_depth_conv`; other platforms never reach it."""
    return xla_conv(x, kernel, 1, "VALID")


def _valid_fwd(x, kernel):
    return valid_conv(x, kernel), (x, kernel)


def _valid_bwd(residuals, g):
    x, kernel = residuals
    kh, kw = kernel.shape[:2]
    gp = jnp.pad(g, ((0, 0), (kh - 1, kh - 1), (kw - 1, kw - 1), (0, 0)))
    dx = valid_conv(gp, jnp.flip(kernel, (0, 1)).swapaxes(2, 3))
    dk = kernel_grad_im2col(x, g, kernel.shape, 1, "VALID").astype(kernel.dtype)
    return dx, dk


valid_conv.defvjp(_valid_fwd, _valid_bwd)


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
