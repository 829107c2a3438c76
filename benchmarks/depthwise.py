"""Depthwise 3x3 convolution: XLA's grouped convolution against our shifted-product form.

  python -m benchmarks.depthwise [--repeats 5]

Forward + backward (input and kernel gradients) of one MobileNetV2-sized layer, and of the
whole MobileNetV2 train step with each form. Why `jaxgenre/models/depthwise.py` exists.
"""
import argparse
import functools

import jax
import jax.numpy as jnp

from benchmarks.common import machine, median_seconds
from jaxgenre.models.ops import depthwise


def grouped(x, k, stride):
    return jax.lax.conv_general_dilated(x, k, (stride, stride), "SAME",
                                        dimension_numbers=("NHWC", "HWIO", "NHWC"),
                                        feature_group_count=x.shape[-1])


def _loss(conv, stride, x, k):
    return jnp.sum(conv(x, k, stride) ** 2)


def _run(step, x, k):
    jax.block_until_ready(step(x, k))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeats", type=int, default=5)
    a = ap.parse_args()
    x = jax.random.normal(jax.random.key(0), (32, 65, 64, 96))
    k = jax.random.normal(jax.random.key(1), (3, 3, 1, 96)) * 0.1
    print(f"machine: {machine()}; jax {jax.__version__}")
    print(f"layer [32, 65, 64, 96], 3x3 depthwise, forward + backward, median of {a.repeats}")
    for stride in (1, 2):
        times = {}
        for name, fn in (("lax grouped conv", grouped), ("ours", depthwise.depthwise_conv3x3)):
            step = jax.jit(jax.grad(functools.partial(_loss, fn, stride), argnums=(0, 1)))
            jax.block_until_ready(step(x, k))
            times[name] = median_seconds(functools.partial(_run, step, x, k), a.repeats)
        print(f"stride {stride}: lax {times['lax grouped conv'] * 1e3:7.1f} ms, ours "
              f"{times['ours'] * 1e3:7.1f} ms, speed-up {times['lax grouped conv'] / times['ours']:.1f}x")


if __name__ == "__main__":
    main()
