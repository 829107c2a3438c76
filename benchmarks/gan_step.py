"""StarGAN train step speed: steps/s and examples/s of `jaxgenre.tasks.gan.StarGanTask.train_step`
at the demo and default sizes of `configs/stargan.py`, as the trainer jits it.

  python -m benchmarks.gan_step [--sizes demo,default] [--steps 5] [--dtype float32]
                                [--d_conv ours,xla] [--loss hinge|nonsaturating|wgan_gp]
                                [--set gan.onset_weight=4 --set gan.diff_augment=roll,cutout,gain]

One step = one D update (hinge + R1) and one G update (adversarial, cycle, identity), plus the
frontend on the raw crops, on this machine's devices with the trainer's shardings. Without a
frozen classifier in the loss (it adds one small classifier pass per step). Reports the median
step time, the FLOPs XLA counts for the step and the FLOP rate they imply; on a GPU, with
--peak_tflops, the model FLOP utilisation (MFU). No peer: no public JAX or PyTorch StarGAN of
this configuration exists to run side by side. `--d_conv ours,xla` times the step twice in one
run: with the discriminator's convolutions as shipped (`conv.space_to_depth_conv`) and as XLA's
strided convolution (what `SNConv` ran before), and prints the ratio. `--loss wgan_gp` (with
its n_critic 5: one G update per 5 D updates) times whole cycles of n_critic steps as the trainer
runs them (`Task.train_steps`) and reports the time and FLOPs per step over a cycle. `--set
KEY=VALUE` (repeatable) times the step twice in one run, as configured and with the values set
(a recipe's options: DiffAugment, the onset term), and prints the ratio.
"""
import argparse
import contextlib

from jaxgenre.core import host_memory

host_memory.configure(relaunch=__name__ == "__main__")  # as jaxgenre.train: before JAX loads

import jax
import numpy as np
from jaxgenre.configs import stargan

from benchmarks.common import machine, median_seconds
from jaxgenre import tasks
from jaxgenre.core import sharding
from jaxgenre.data import spec
from jaxgenre.models.ops import conv
from jaxgenre.sweep import space


@contextlib.contextmanager
def discriminator_conv(kind: str):
    """'ours': `SNConv` as shipped; 'xla': `SNConv` on XLA's strided convolution instead."""
    saved = conv.space_to_depth_conv
    if kind == "xla":
        conv.space_to_depth_conv = conv.xla_conv
    try:
        yield
    finally:
        conv.space_to_depth_conv = saved


def parse_set(item: str) -> tuple[str, str]:
    """'KEY=VALUE' -> (KEY, VALUE); the value is typed against the config in `measure`."""
    key, sep, value = item.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"--set {item!r}: expected KEY=VALUE, e.g. "
                                         "gan.onset_weight=4.")
    return key, value


def typed(config, key: str, value: str):
    """`value` as the type of the config's current `key` (as --config.KEY=VALUE would be)."""
    node = config
    for part in key.split("."):
        if part not in node:
            raise SystemExit(f"--set {key}: no such config key; valid at this level: "
                             f"{', '.join(sorted(node.keys()))}.")
        node = node[part]
    if isinstance(node, bool):
        return value.lower() in ("1", "true", "yes")
    return type(node)(value) if node is not None else value


def measure(size: str, steps: int, dtype: str, peak_tflops: float | None,
            loss: str = "hinge", sets: tuple = ()) -> dict:
    config = stargan.get_config(",".join(w for w in ("demo" if size == "demo" else "", loss) if w))
    config = space.apply(config, {k: typed(config, k, v) for k, v in sets})
    config.model.dtype = config.discriminator.dtype = dtype
    rate = 22_050
    data = spec.DataSpec("fma/small", tuple(f"genre{i}" for i in range(8)), rate,
                          round(config.data.crop_seconds * rate))
    mesh = sharding.make_mesh()
    task = tasks.create(config, data, mesh)
    _, state_sharding = sharding.abstract_state(task.init, mesh)
    state = jax.jit(task.init, out_shardings=state_sharding)()
    batch_sharding = sharding.batch_sharding(mesh)
    cycle = tasks.jit_update_cycle(task, state_sharding, mesh)  # as the trainer runs it
    rng = np.random.default_rng(0)
    batch = {"audio": rng.integers(-8000, 8000, (config.batch_size, data.crop_samples), np.int16),
             "label": rng.integers(0, 8, config.batch_size).astype(np.int32)}
    batch = jax.device_put(batch, batch_sharding)
    # FLOPs per step over a cycle (a D-only step has no G passes)
    flops = sum(fn.lower(state, batch).compile().cost_analysis().get("flops", float("nan"))
                for fn in cycle) / len(cycle)  # each distinct one compiles once, cached
    holder = {"state": state}

    def run():
        for fn in cycle:
            holder["state"], metrics = fn(holder["state"], batch)
        jax.block_until_ready(metrics)

    run()  # compile and warm up
    seconds = median_seconds(run, steps) / len(cycle)
    out = {"size": size, "loss": loss, "n_critic": len(cycle), "batch": config.batch_size,
           "crop_s": config.data.crop_seconds, "n_mels": config.frontend.n_mels,
           "step_s": seconds, "steps_per_s": 1 / seconds,
           "examples_per_s": config.batch_size / seconds, "gflop_per_step": flops / 1e9,
           "achieved_tflops": flops / seconds / 1e12}
    if peak_tflops:
        out["mfu"] = out["achieved_tflops"] / peak_tflops
    return out


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--sizes", default="demo,default")
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--dtype", default="float32", choices=["float32", "bfloat16"])
    parser.add_argument("--d_conv", default="ours",
                        help="Comma-separated: ours (as shipped), xla (XLA's strided convolution "
                             "in the discriminator); with both, the ratio xla / ours is printed.")
    parser.add_argument("--loss", default="hinge", choices=["hinge", "nonsaturating", "wgan_gp"])
    parser.add_argument("--peak_tflops", type=float, default=None,
                        help="The device's peak dense TFLOP/s in --dtype, for MFU.")
    parser.add_argument("--set", type=parse_set, action="append", default=[], dest="sets",
                        metavar="KEY=VALUE", help="A config value of the recipe to time beside "
                        "the config as it is (repeatable); the ratio is printed.")
    args = parser.parse_args()
    print(f"machine: {machine()}; devices: {jax.devices()[0].device_kind} x {jax.device_count()}")
    kinds = args.d_conv.split(",")
    if set(kinds) - {"ours", "xla"}:
        parser.error(f"--d_conv {args.d_conv!r}: valid kinds are ours, xla.")
    for key, value in args.sets:  # refused before any timing
        typed(stargan.get_config(), key, value)
    recipes = {"as configured": ()}
    if args.sets:
        recipes[" ".join(f"{k}={v}" for k, v in args.sets)] = tuple(args.sets)
    for size in args.sizes.split(","):
        seconds = {}
        for kind in kinds:
            for name, sets in recipes.items():
                with discriminator_conv(kind):
                    r = measure(size, args.steps, args.dtype, args.peak_tflops, args.loss, sets)
                seconds[kind, name] = r["step_s"]
                print(_line(r, kind, args.steps) + f" [{name}]", flush=True)
        base = "as configured"
        if {"ours", "xla"} <= set(kinds):
            print(f"{size:>8}: ours {seconds['xla', base] / seconds['ours', base]:.2f}x faster "
                  "than XLA's strided convolution in the discriminator", flush=True)
        if args.sets:
            name = list(recipes)[1]
            print(f"{size:>8}: [{name}] takes {seconds[kinds[0], name] / seconds[kinds[0], base]:.2f}x "
                  "the time per step of the config as it is", flush=True)


def _line(r: dict, kind: str, steps: int) -> str:
    line = (f"{r['size']:>8} (D conv: {kind}, {r['loss']}, n_critic {r['n_critic']}): batch "
            f"{r['batch']}, {r['crop_s']} s crops, {r['n_mels']} mels: {r['step_s']:.3f} s/step "
            f"(median of {steps} cycles of {r['n_critic']}), {r['steps_per_s']:.2f} "
            f"steps/s, {r['examples_per_s']:.1f} examples/s, {r['gflop_per_step']:.0f} "
            f"GFLOP/step, {r['achieved_tflops'] * 1e3:.0f} GFLOP/s")
    if "mfu" in r:
        line += f", MFU {r['mfu']:.1%}"
    return line


if __name__ == "__main__":
    main()
