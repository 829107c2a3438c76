"""Our MobileNetV2 train step with glibc's default malloc against `host_memory.keep_freed_memory`.

  python -m benchmarks.host_memory [--batch 32] [--steps 8] [--model mobilenet_v2]

Each setting runs in its own process (malloc settings last for the process), the two one after
the other in one run. Reports, per step: median wall time, page faults, kernel (sys) CPU time,
and the ratio of examples/s. See jaxgenre/host_memory.py for why the faults happen.
"""
import argparse
import json
import resource
import subprocess
import sys

from benchmarks.common import machine, median_seconds


def measure(keep_freed: bool, model: str, batch: int, steps: int) -> dict:
    """Runs in the child process: our step, timed, with the page faults it causes."""
    from jaxgenre import host_memory
    applied = host_memory.keep_freed_memory() if keep_freed else False
    import jax.numpy as jnp

    from benchmarks.train_step import jax_step
    run, _ = jax_step(model, batch, (130, 128, 1), jnp.float32)
    run()
    before = resource.getrusage(resource.RUSAGE_SELF)
    seconds = median_seconds(run, steps)
    after = resource.getrusage(resource.RUSAGE_SELF)
    return {"applied": applied, "examples_per_s": batch / seconds,
            "faults_per_step": (after.ru_minflt - before.ru_minflt) / steps,
            "sys_s_per_step": (after.ru_stime - before.ru_stime) / steps}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--steps", type=int, default=8)
    ap.add_argument("--model", default="mobilenet_v2")
    ap.add_argument("--child", choices=["default", "keep_freed"], help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.child:
        print(json.dumps(measure(a.child == "keep_freed", a.model, a.batch, a.steps)))
        return
    print(f"machine: {machine()}")
    print(f"{a.model}, input [{a.batch}, 130, 128, 1], float32, median of {a.steps} steps")
    results = {}
    for setting in ("default", "keep_freed"):
        out = subprocess.run([sys.executable, "-m", "benchmarks.host_memory", "--child", setting,
                              "--batch", str(a.batch), "--steps", str(a.steps), "--model", a.model],
                             capture_output=True, text=True, check=True)
        r = results[setting] = json.loads(out.stdout.strip().splitlines()[-1])
        print(f"{setting:10s} {r['examples_per_s']:7.1f} examples/s, "
              f"{r['faults_per_step']:9.0f} page faults/step, {r['sys_s_per_step']:.2f} s sys/step"
              + ("" if setting == "default" or r["applied"] else " (not applied: accelerator host, or not glibc)"))
    ratio = results["keep_freed"]["examples_per_s"] / results["default"]["examples_per_s"]
    print(f"ratio keep_freed / default: {ratio:.2f}x")


if __name__ == "__main__":
    main()
