"""Inference speed of classifier runs side by side: clips per second through the same path
`predict` and the service take (`jaxgenre.api.Classifier`), with parameter counts, and each
run's ratio to the first (e.g. a teacher against its distilled student).

  python -m benchmarks.inference_speed runs/demo runs/student [--clips 64] [--seconds 10]
      [--batch 16] [--repeats 5]

Every run classifies the same `--clips` clips of `--seconds` of noise-and-tone audio (content
does not change the compute) in batches of `--batch` windows, after one untimed pass that
compiles; the median of `--repeats` passes is reported. One process, one run at a time.
"""
import argparse

import jax
import numpy as np

from benchmarks.common import machine, median_seconds
from jaxgenre import api


def _clips(count: int, seconds: float, rate: int) -> list[np.ndarray]:
    rng = np.random.default_rng(0)
    t = np.arange(int(seconds * rate)) / rate
    return [(0.2 * np.sin(2 * np.pi * (110 + 20 * i) * t) + 0.05 * rng.standard_normal(t.size))
            .astype(np.float32) for i in range(count)]


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("workdirs", nargs="+")
    parser.add_argument("--clips", type=int, default=64)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    print(f"machine: {machine()}; {jax.device_count()} {jax.default_backend()} device(s)")
    rows = []
    for workdir in args.workdirs:
        classifier = api.Classifier.from_run(workdir, batch_sizes=(args.batch,),
                                             window_seconds=args.seconds)
        clips = _clips(args.clips, args.seconds, classifier.sample_rate)
        classifier.predict_many(clips)  # compiles
        seconds = median_seconds(lambda: classifier.predict_many(clips), args.repeats)
        params = sum(x.size for x in jax.tree.leaves(classifier.judge.state.ema_params))
        rows.append((workdir, classifier.info["model"], params, args.clips / seconds))
        print(f"{workdir}: {rows[-1][1]}, {params:,} parameters, {rows[-1][3]:.1f} clips/s",
              flush=True)
    print(f"\n| run | model | parameters | clips/s ({args.seconds:g} s clips) | speed vs the first |")
    print("|---|---|---|---|---|")
    for workdir, model, params, rate in rows:
        print(f"| {workdir} | {model} | {params:,} | {rate:.1f} | {rate / rows[0][3]:.2f} |")


if __name__ == "__main__":
    main()
