"""Convolution kernel gradient: XLA's against our im2col products (`jaxgenre.models.ops.conv`).

  python -m benchmarks.conv_grad [--repeats 5]

The ResNet-18 convolutions at batch 32 on a 3 s log-mel crop ([32, 130, 128, 1]); for each
layer the median time of d loss / d kernel computed three ways, side by side: XLA's, im2col
over the whole batch at once, and ours (im2col over chunks of `conv.CHUNK_BYTES`), and the
ratio XLA / ours.
"""
import argparse
import functools

import jax

from benchmarks.common import machine, median_seconds
from jaxgenre.models.ops import conv

# (input shape [B, H, W, C_in], kernel [kh, kw, C_in, C_out], stride, name)
_LAYERS = (((32, 130, 128, 1), (7, 7, 1, 64), 2, "stem 7x7/2"),
           ((32, 33, 32, 64), (3, 3, 64, 64), 1, "stage 1 3x3"),
           ((32, 33, 32, 64), (3, 3, 64, 128), 2, "stage 2 3x3/2"),
           ((32, 33, 32, 64), (1, 1, 64, 128), 2, "stage 2 shortcut 1x1/2"),
           ((32, 17, 16, 128), (3, 3, 128, 128), 1, "stage 2 3x3"),
           ((32, 9, 8, 256), (3, 3, 256, 256), 1, "stage 3 3x3"),
           ((32, 5, 4, 512), (3, 3, 512, 512), 1, "stage 4 3x3"))


def _xla_kernel_grad(x, g, kernel, stride):
    return jax.vjp(functools.partial(conv.xla_conv, stride=stride), x, kernel)[1](g)[1]


def _timed(fn, *args, repeats):
    jax.block_until_ready(fn(*args))
    return median_seconds(lambda: jax.block_until_ready(fn(*args)), repeats)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeats", type=int, default=5)
    a = ap.parse_args()
    print(f"machine: {machine()}; jax {jax.__version__} on {jax.devices()[0].device_kind}")
    print(f"{'layer':24s} {'XLA ms':>9s} {'whole ms':>9s} {'ours ms':>9s} {'ratio':>7s}")
    totals = [0.0, 0.0, 0.0]
    for x_shape, k_shape, stride, name in _LAYERS:
        x = jax.random.normal(jax.random.key(0), x_shape)
        kernel = jax.random.normal(jax.random.key(1), k_shape)
        g = jax.random.normal(jax.random.key(2), conv.xla_conv(x, kernel, stride).shape)
        xla = jax.jit(functools.partial(_xla_kernel_grad, stride=stride))
        ours, whole = (jax.jit(functools.partial(conv.kernel_grad_im2col, kernel_shape=k_shape,
                                                 stride=stride, chunk_bytes=chunk_bytes))
                       for chunk_bytes in (conv.CHUNK_BYTES, 1 << 40))
        times = (_timed(xla, x, g, kernel, repeats=a.repeats),
                 _timed(whole, x, g, repeats=a.repeats), _timed(ours, x, g, repeats=a.repeats))
        totals = [t + u for t, u in zip(totals, times)]
        print(f"{name:24s} " + " ".join(f"{t * 1e3:9.1f}" for t in times)
              + f" {times[0] / times[2]:6.2f}x")
    print(f"{'sum':24s} " + " ".join(f"{t * 1e3:9.1f}" for t in totals)
          + f" {totals[0] / totals[2]:6.2f}x")


if __name__ == "__main__":
    main()
