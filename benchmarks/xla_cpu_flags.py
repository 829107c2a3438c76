"""Our train step under XLA:CPU options, each in a fresh process, against no options.

  python -m benchmarks.xla_cpu_flags [--models resnet18,mobilenet_v2] [--steps 8] \
      [--settings NAME=FLAGS;NAME=FLAGS ...] [--json OUT]

XLA reads XLA_FLAGS once per process, so every setting runs `benchmarks.train_step.jax_step`
(batch 32, [130, 128, 1], Adam, float32) in a child process with that XLA_FLAGS; examples/s is
the median step after two warm-up steps. Printed: examples/s per model and setting, and the
ratio to the 'default' setting (> 1: the option is faster). The peer here is our own step
without options: this measures options, the PyTorch comparison is `benchmarks.vs_pytorch`.
"""
import argparse
import json
import os
import subprocess
import sys

from benchmarks.common import machine

SETTINGS = {
    "default": "",
    "onednn_custom_call": "--xla_cpu_experimental_onednn_custom_call=true",
    "use_onednn": "--xla_cpu_use_onednn=true",
    "ynn_convolution": "--xla_cpu_experimental_ynn_fusion_type=individual_dot,"
                       "individual_convolution",
    "xnnpack": "--xla_cpu_use_xnnpack=true",
    "fast_math": "--xla_cpu_enable_fast_math=true",
}
_CHILD = """
import json, sys
from benchmarks.common import median_seconds
from benchmarks.train_step import jax_step
import jax.numpy as jnp
name, steps = sys.argv[1], int(sys.argv[2])
run, _ = jax_step(name, 32, (130, 128, 1), jnp.float32)
for _ in range(2):
    run()
print("RESULT", json.dumps(32 / median_seconds(run, steps)))
"""


def measure(model: str, flags: str, steps: int) -> float | str:
    env = {**os.environ, "XLA_FLAGS": f"{os.environ.get('XLA_FLAGS', '')} {flags}".strip()}
    proc = subprocess.run([sys.executable, "-c", _CHILD, model, str(steps)], env=env,
                          capture_output=True, text=True, timeout=1800, check=False)
    if proc.returncode != 0 or "RESULT" not in proc.stdout:
        return f"failed: {proc.stderr.strip().splitlines()[-1][:160] if proc.stderr else '?'}"
    return json.loads(proc.stdout.split("RESULT", 1)[1])


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--models", default="resnet18,mobilenet_v2")
    ap.add_argument("--steps", type=int, default=8)
    ap.add_argument("--settings", default=None,
                    help="NAME=FLAGS;... (default: every entry of SETTINGS)")
    ap.add_argument("--json", default=None)
    a = ap.parse_args()
    settings = (dict(s.split("=", 1) for s in a.settings.split(";")) if a.settings
                else SETTINGS)
    settings = {"default": "", **settings}
    print(f"machine: {machine()}; median of {a.steps} steps, batch 32, float32")
    results = {}
    for model in a.models.split(","):
        results[model] = {}
        for name, flags in settings.items():
            r = results[model][name] = measure(model, flags, a.steps)
            base = results[model]["default"]
            ratio = (f"{r / base:5.2f}x" if isinstance(r, float) and isinstance(base, float)
                     else "")
            shown = f"{r:7.1f} ex/s" if isinstance(r, float) else r
            print(f"{model:14s} {name:22s} {shown}  {ratio}   {flags}", flush=True)
    if a.json:
        with open(a.json, "w") as f:
            json.dump({"machine": machine(), "steps": a.steps, "settings": settings,
                       "examples_per_second": results}, f, indent=2)


if __name__ == "__main__":
    main()
