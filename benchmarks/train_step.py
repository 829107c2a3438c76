"""Train step: our MobileNetV2 against tf.keras.applications.MobileNetV2, side by side.

  python benchmarks/train_step.py [--batch 32] [--steps 10] [--dtype float32]

Same input ([B, 130, 128, 1]: the log-mel of a 3 s crop), batch, optimizer (Adam 1e-3, no
weight decay), loss (softmax cross-entropy) and dtype. Both steps run compiled (jax.jit;
tf.function). Reports examples/s (median step time) and the ratio. On a GPU it also reports
the model FLOP utilisation from XLA's cost analysis and the device's peak (--peak_tflops).
"""
import argparse
import functools

from jaxgenre.core import host_memory

host_memory.configure(relaunch=__name__ == "__main__")  # as jaxgenre.train: before JAX loads

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from benchmarks.common import machine, median_seconds
from jaxgenre import models


def jax_step(name, batch, shape, dtype):
    model = models.get(name)(8, in_channels=shape[-1], dtype=dtype, rngs=nnx.Rngs(0))
    graphdef, params, rest = nnx.split(model, nnx.Param, ...)
    tx = optax.adam(1e-3)
    opt_state = tx.init(params)

    @functools.partial(jax.jit, donate_argnums=(0, 1, 2))
    def step(params, rest, opt_state, x, y):
        def loss_fn(params):
            m = nnx.merge(graphdef, params, rest, copy=True)
            logits = m(x, train=True, rngs=nnx.Rngs(dropout=0))
            return (optax.softmax_cross_entropy_with_integer_labels(logits, y).mean(),
                    nnx.state(m, nnx.BatchStat))
        (loss, rest), grads = jax.value_and_grad(loss_fn, has_aux=True)(params)
        updates, opt_state = tx.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), rest, opt_state, loss

    x = jnp.asarray(np.random.default_rng(0).normal(size=(batch, *shape)), dtype)
    y = jnp.zeros((batch,), jnp.int32)
    flops = step.lower(params, rest, opt_state, x, y).compile().cost_analysis()
    flops = (flops[0] if isinstance(flops, list) else flops).get("flops", float("nan"))
    state = [params, rest, opt_state]

    def run():
        state[0], state[1], state[2], loss = step(*state, x, y)
        loss.block_until_ready()
    return run, flops


def keras_step(batch, shape):
    import tensorflow as tf
    model = tf.keras.applications.MobileNetV2(weights=None, input_shape=shape, classes=8,
                                              classifier_activation=None)
    opt = tf.keras.optimizers.Adam(1e-3)
    loss_fn = tf.keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    x = tf.constant(np.random.default_rng(0).normal(size=(batch, *shape)), tf.float32)
    y = tf.zeros((batch,), tf.int32)

    @tf.function
    def step():
        with tf.GradientTape() as tape:
            loss = loss_fn(y, model(x, training=True))
        opt.apply_gradients(zip(tape.gradient(loss, model.trainable_variables),
                                model.trainable_variables))
        return loss

    return lambda: step().numpy()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--dtype", default="float32", choices=["float32", "bfloat16"])
    ap.add_argument("--models", default="mobilenet_v2")
    ap.add_argument("--no_keras", action="store_true", help="skip the Keras peer (GPU runs)")
    ap.add_argument("--peak_tflops", type=float, default=0.0, help="device peak, for MFU")
    a = ap.parse_args()
    shape = (130, 128, 1)
    dtype = {"float32": jnp.float32, "bfloat16": jnp.bfloat16}[a.dtype]
    print(f"machine: {machine()}; jax {jax.__version__} on {jax.devices()[0].device_kind}")
    print(f"input [{a.batch}, {', '.join(map(str, shape))}], Adam, {a.dtype}, "
          f"median of {a.steps} steps; malloc (both sides): {host_memory.active()}")
    rates = {}
    for name in a.models.split(","):
        run, flops = jax_step(name, a.batch, shape, dtype)
        run()
        seconds = median_seconds(run, a.steps)
        rates[name] = a.batch / seconds
        mfu = (f", MFU {flops / seconds / (a.peak_tflops * 1e12):.1%}" if a.peak_tflops else "")
        print(f"ours {name:14s} {rates[name]:9.1f} examples/s "
              f"({flops / seconds / 1e12:.2f} TFLOP/s{mfu})")
    if not a.no_keras and "mobilenet_v2" in rates:
        run = keras_step(a.batch, shape)
        run()
        keras_rate = a.batch / median_seconds(run, a.steps)
        print(f"keras MobileNetV2    {keras_rate:9.1f} examples/s")
        print(f"ratio ours / keras: {rates['mobilenet_v2'] / keras_rate:.2f}x")


if __name__ == "__main__":
    main()
