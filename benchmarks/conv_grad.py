"""Convolution kernel gradient: XLA's against our im2col product (`jaxgenre.models.conv`).

  python -m benchmarks.conv_grad [--repeats 5]

The ResNet-18 convolutions at batch 32 on a 3 s log-mel crop ([32, 130, 128, 1]); for each
layer the median time of d loss / d kernel computed both ways, side by side, and the ratio.
"""
import argparse
import functools

import jax

from benchmarks.common import machine, median_seconds
from jaxgenre.models import conv

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
    print(f"{'layer':24s} {'XLA ms':>9s} {'ours ms':>9s} {'ratio':>7s}")
    totals = [0.0, 0.0]
    for x_shape, k_shape, stride, name in _LAYERS:
        x = jax.random.normal(jax.random.key(0), x_shape)
        kernel = jax.random.normal(jax.random.key(1), k_shape)
        g = jax.random.normal(jax.random.key(2), conv.xla_conv(x, kernel, stride).shape)
        xla = jax.jit(functools.partial(_xla_kernel_grad, stride=stride))
        ours = jax.jit(functools.partial(conv.kernel_grad_im2col, kernel_shape=k_shape,
                                         stride=stride))
        t_xla = _timed(xla, x, g, kernel, repeats=a.repeats)
        t_ours = _timed(ours, x, g, repeats=a.repeats)
        totals[0] += t_xla
        totals[1] += t_ours
        print(f"{name:24s} {t_xla * 1e3:9.1f} {t_ours * 1e3:9.1f} {t_xla / t_ours:6.2f}x")
    print(f"{'sum':24s} {totals[0] * 1e3:9.1f} {totals[1] * 1e3:9.1f} "
          f"{totals[0] / totals[1]:6.2f}x")


if __name__ == "__main__":
    main()
