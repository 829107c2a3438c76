"""Peak host memory and training speed of the demo run under each malloc setting, side by side.

  python -m benchmarks.host_memory [--settings glibc,one_arena,huge_pages,jemalloc,tcmalloc]
      [--steps 40] [--repeats 1] [--json OUT]

Each run is `python -m jaxgenre.train --config configs/mobilenet.py:demo` for --steps steps
(evaluation and checkpoint every steps/2, progress logged every steps/4), in its own process:
a malloc setting lasts for a process. Settings run one after the other, interleaved across
repeats. Per run: peak resident memory (the process's `ru_maxrss`, from `wait4`), minor page
faults, wall time, and training examples/s: the mean of the trainer's logged rate over the two
intervals with no compilation, evaluation or checkpoint in them (the 2nd and 4th of 4).
Medians over repeats, and ratios against glibc's defaults.

Settings (see jaxgenre/host_memory.py):
  glibc       malloc as the process starts (JAXGENRE_MALLOC=glibc)
  one_arena   the earlier in-process setting: one arena, no mmap, no trimming (as tunables)
  huge_pages  glibc with transparent huge pages for its mappings
  jemalloc    libjemalloc preloaded (when installed), freed pages kept
  tcmalloc    libtcmalloc_minimal preloaded (when installed), its defaults
  auto        JAXGENRE_MALLOC=auto, the default (the run prints what it resolves to here)
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

from benchmarks.common import machine
from jaxgenre.core import host_memory

_ENV = {
    "glibc": {"JAXGENRE_MALLOC": "glibc"},
    "one_arena": {"JAXGENRE_MALLOC": "glibc", "GLIBC_TUNABLES":
                  "glibc.malloc.arena_max=1:glibc.malloc.mmap_max=0:"
                  "glibc.malloc.trim_threshold=18446744073709551615"},
    "huge_pages": {"JAXGENRE_MALLOC": "huge_pages"},
    "jemalloc": {"JAXGENRE_MALLOC": "jemalloc"},
    "tcmalloc": {"JAXGENRE_MALLOC": "tcmalloc"},
    "auto": {"JAXGENRE_MALLOC": "auto"},
}


# What this process may have inherited (its own relaunch, a user's preload): each run starts
# from none of them, with its setting's alone.
_MALLOC_VARIABLES = ("LD_PRELOAD", "MALLOC_CONF", "GLIBC_TUNABLES", "JAXGENRE_MALLOC_ACTIVE")


def _available(setting: str) -> str | None:
    """Why `setting` cannot run here, or None."""
    try:
        host_memory.resolve(_ENV[setting]["JAXGENRE_MALLOC"])
    except ValueError as e:
        return str(e)
    return None


def _train_rates(workdir: str) -> dict[int, float]:
    """{step: examples_per_sec} from the run's TensorBoard events."""
    import tensorflow as tf
    rates = {}
    for name in os.listdir(workdir):
        if name.startswith("events.out.tfevents"):
            for event in tf.compat.v1.train.summary_iterator(os.path.join(workdir, name)):
                for v in event.summary.value:
                    if v.tag == "examples_per_sec":
                        rates[event.step] = float(tf.make_ndarray(v.tensor))
    return rates


def run(setting: str, steps: int, data_dir: str | None) -> dict:
    """One demo training run under `setting`; its peak RSS, faults, wall time and speed."""
    quarter = steps // 4
    with tempfile.TemporaryDirectory() as workdir:
        cmd = [sys.executable, "-m", "jaxgenre.train", "--config", "configs/mobilenet.py:demo",
               "--workdir", workdir, f"--config.total_steps={steps}",
               f"--config.eval_every_steps={2 * quarter}",
               f"--config.checkpoint_every_steps={2 * quarter}",
               f"--config.log_every_steps={quarter}"]
        if data_dir:
            cmd.append(f"--config.data.data_dir={data_dir}")
        start = time.perf_counter()
        env = {k: v for k, v in os.environ.items() if k not in _MALLOC_VARIABLES}
        proc = subprocess.Popen(cmd, env={**env, **_ENV[setting]},
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        stderr = proc.stderr.read()
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - start
        if os.waitstatus_to_exitcode(status) != 0:
            raise RuntimeError(f"{setting}: training failed:\n{stderr[-3000:]}")
        rates = _train_rates(workdir)
    clean = [rates[2 * quarter], rates[4 * quarter]]  # intervals without compile/eval/checkpoint
    return {"peak_rss_gb": usage.ru_maxrss * 1024 / 1e9, "minor_faults": usage.ru_minflt,
            "wall_s": wall, "examples_per_s": statistics.mean(clean)}


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--settings", default="glibc,one_arena,huge_pages,jemalloc,tcmalloc")
    ap.add_argument("--steps", type=int, default=40, help="a multiple of 4")
    ap.add_argument("--repeats", type=int, default=1)
    ap.add_argument("--data_dir", default=None, help="where fma/demo is (or gets) built")
    ap.add_argument("--json", default=None)
    a = ap.parse_args()
    settings = [s for s in a.settings.split(",") if s]
    unknown = sorted(set(settings) - set(_ENV))
    if unknown or a.steps % 4:
        sys.exit(f"error: unknown settings {unknown} (valid: {', '.join(_ENV)})" if unknown
                 else "error: --steps must be a multiple of 4")
    skipped = {s: why for s in settings if (why := _available(s))}
    settings = [s for s in settings if s not in skipped]
    print(f"machine: {machine()}")
    print(f"configs/mobilenet.py:demo, {a.steps} steps, evaluation and checkpoint every "
          f"{a.steps // 2}; {a.repeats} repeat(s), medians")
    print(f"JAXGENRE_MALLOC=auto (jaxgenre.train's default) here: {host_memory.resolve('auto')}")
    for s, why in skipped.items():
        print(f"skipped {s}: {why}")
    run("glibc", 4, a.data_dir)  # builds fma/demo if needed and warms the file cache: untimed
    runs = {s: [] for s in settings}
    for _ in range(a.repeats):
        for s in settings:
            runs[s].append(run(s, a.steps, a.data_dir))
            print(f"  {s}: {runs[s][-1]}", flush=True)
    table = {s: {k: statistics.median(r[k] for r in rs) for k in rs[0]} for s, rs in runs.items()}
    base = table.get("glibc")
    print("\n| setting | peak RSS (GB) | train examples/s | wall (s) | minor faults |"
          + (" RSS / glibc | examples/s / glibc |" if base else ""))
    print("|---|---|---|---|---|" + ("---|---|" if base else ""))
    for s, r in table.items():
        if base:
            r["rss_ratio"] = r["peak_rss_gb"] / base["peak_rss_gb"]
            r["speed_ratio"] = r["examples_per_s"] / base["examples_per_s"]
        print(f"| {s} | {r['peak_rss_gb']:.2f} | {r['examples_per_s']:.1f} | {r['wall_s']:.0f} | "
              f"{r['minor_faults']:.0f} |"
              + (f" {r['rss_ratio']:.2f}x | {r['speed_ratio']:.2f}x |" if base else ""))
    if a.json:
        with open(a.json, "w") as f:
            json.dump({"machine": machine(), "steps": a.steps, "repeats": a.repeats,
                       "results": table, "runs": runs, "skipped": skipped}, f, indent=2)


if __name__ == "__main__":
    main()
