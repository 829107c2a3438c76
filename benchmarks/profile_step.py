"""Where our train step spends its time, by XLA thunk kind, from a JAX profiler trace.

  python -m benchmarks.profile_step [--model resnet18] [--steps 3] [--top 20] [--trace_dir DIR]

Runs `benchmarks.train_step.jax_step` (batch 32, [130, 128, 1], Adam, float32), traces
`--steps` steps after two warm-up steps with `jax.profiler`, and sums the XLA:CPU thunks' time
per step over all threads, by kind (the thunk name without its '.N' suffix: `ynn_fusion` are
convolutions and products run by YNNPACK, `*_fusion` XLA's fused loops, `wrapped_*` single ops).
The trace stays in --trace_dir for TensorBoard's profile plugin. For the same per-convolution
view against PyTorch, see `benchmarks.conv_layers`.
"""
import argparse
import collections
import glob
import os
import re
import tempfile

from jaxgenre.core import host_memory

host_memory.configure(relaunch=__name__ == "__main__")  # as jaxgenre.train: before JAX loads

import jax
import jax.numpy as jnp

from benchmarks.common import machine
from benchmarks.train_step import jax_step


def thunk_times(trace_dir: str, steps: int) -> collections.Counter:
    """{thunk kind: ms per step, summed over threads} from the trace's .xplane.pb."""
    from tensorflow.tsl.profiler.protobuf import xplane_pb2  # the trace's format

    space = xplane_pb2.XSpace()
    with open(glob.glob(os.path.join(trace_dir, "plugins/profile/*/*.xplane.pb"))[0], "rb") as f:
        space.ParseFromString(f.read())
    times = collections.Counter()
    for plane in space.planes:
        names = {k: v.name for k, v in plane.event_metadata.items()}
        for line in plane.lines:
            if line.name == "python":
                continue
            for event in line.events:
                name = names.get(event.metadata_id, "?")
                if not name.startswith("ThunkExecutor"):  # the executor's span, not a thunk
                    times[re.sub(r"\.\d+$", "", name)] += event.duration_ps / 1e9 / steps
    return times


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="resnet18")
    ap.add_argument("--steps", type=int, default=3)
    ap.add_argument("--top", type=int, default=20)
    ap.add_argument("--trace_dir", default=None)
    a = ap.parse_args()
    trace_dir = a.trace_dir or tempfile.mkdtemp(prefix=f"profile_{a.model}_")
    run, _ = jax_step(a.model, 32, (130, 128, 1), jnp.float32)
    run()
    run()
    jax.profiler.start_trace(trace_dir)
    for _ in range(a.steps):
        run()
    jax.profiler.stop_trace()
    times = thunk_times(trace_dir, a.steps)
    total = sum(times.values())
    print(f"machine: {machine()}; jax {jax.__version__}; {a.model}, batch 32, {a.steps} steps "
          f"traced in {trace_dir}")
    print(f"thunk time, all threads: {total:.0f} ms per step")
    for name, ms in times.most_common(a.top):
        print(f"  {ms:8.1f} ms {100 * ms / total:5.1f} %  {name}")


if __name__ == "__main__":
    main()
