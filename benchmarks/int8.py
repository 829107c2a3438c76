"""Post-training int8 against float: one classifier run as the JAX judge (what `predict` and the
service run by default), as float32 LiteRT and as int8 LiteRT, side by side in one process on
the same clips, with accuracy, size, single-clip latency and batch throughput, and the ratios.

  python -m benchmarks.int8 runs/demo [--split test] [--calibration_clips 256] [--repeats 5]
      [--batch 16] [--out DIR]

Both LiteRT exports are made here by `jaxgenre.export`'s function (into --out, default a
temporary directory). Accuracy: every clip of --split as the dataset stores it (real length,
crops evenly spaced, as `jaxgenre.evaluate`), top genre against the label. Latency: one stored
clip, the median of 10 x --repeats calls after one untimed call. Throughput: the whole split, the
JAX judge in batches of --batch clips, LiteRT one crop at a time on all CPU threads (its models
take one crop); the median of --repeats passes. Size: the model files (LiteRT: frontend +
network), against the run's float32 weights (ema parameters and statistics, 4 bytes each).
"""
import argparse
import os
import sys
import tempfile

import jax
import numpy as np

from benchmarks.common import machine, median_seconds
from jaxgenre.core import sharding
from jaxgenre.data import input_pipeline
from jaxgenre.inference import judge, litert
from jaxgenre.run import rundir
from jaxgenre.tasks import classifier
from jaxgenre.tools import export


def _clips(data, split: str, mesh) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(audio float32 [K, N] in [-1, 1], num_samples int32 [K], labels int [K]) of the split
    of the dataset that the run's config section `data` names."""
    builder = input_pipeline.load_builder(data.name, data.get("data_dir"), build=False)
    audio, lengths, labels = [], [], []
    for batch in input_pipeline.clip_batches(builder, split, 1, mesh):
        audio.append(np.asarray(batch["audio"])[0].astype(np.float32) / 32768.0)
        lengths.append(int(np.asarray(batch["num_samples"])[0]))
        labels.append(int(np.asarray(batch["label"])[0]))
    return np.stack(audio), np.array(lengths, np.int32), np.array(labels)


def _batches(judge_fn, audio, lengths, batch: int) -> np.ndarray:
    """Probabilities [K, C] of all clips, `batch` clips per call (the last one padded)."""
    out = []
    for start in range(0, len(audio), batch):
        x, n = audio[start:start + batch], lengths[start:start + batch]
        pad = batch - len(x)
        x = np.pad(x, ((0, pad), (0, 0)))
        n = np.pad(n, (0, pad))
        out.append(np.asarray(judge_fn(x, n)[0])[:batch - pad])
    return np.concatenate(out)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("workdir")
    parser.add_argument("--split", default="test")
    parser.add_argument("--calibration_clips", type=int, default=256)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--out", default=None, help="Where the exports go (default: a temp dir).")
    args = parser.parse_args()
    print(f"machine: {machine()}; {jax.device_count()} {jax.default_backend()} device(s)")
    mesh = sharding.make_mesh(jax.devices()[:1])
    config = rundir.load_config(args.workdir)
    if classifier.multi_label(config):
        sys.exit("benchmarks.int8 scores accuracy against one label per clip, and this run is "
                 "multi-label (data.label 'genres'): its LiteRT export works (predict, serve), "
                 "but this benchmark does not score it.")
    out = args.out or tempfile.mkdtemp(prefix="int8_")
    exports = {}
    for q in litert.QUANTIZE:
        exports[q] = os.path.join(out, q)
        info = export.export_lite(args.workdir, exports[q], quantize=q,
                                  calibration_clips=args.calibration_clips)
        print(f"exported {q}: {sum(info['bytes'].values()):,} bytes, calibration clips "
              f"{info['calibration_clips']}", flush=True)

    audio, lengths, labels = _clips(config.data, args.split, mesh)
    reference = judge.Judge(args.workdir, mesh)
    data = sharding.batch_sharding(mesh)

    def jax_judge(x, n):
        return reference(jax.device_put(x, data), jax.device_put(n, data))

    weights = sum(x.size for x in jax.tree.leaves((reference.state.ema_params,
                                                   reference.state.ema_model_state)))
    methods = {"JAX float32 (judge)": (jax_judge, args.batch, 4 * weights)}
    for q, path in exports.items():
        lite = litert.LiteJudge(path)
        size = sum(os.path.getsize(os.path.join(path, f))
                   for f in (litert.FRONTEND_FILE, litert.NETWORK_FILE))
        methods[f"LiteRT {'float32' if q == 'none' else q}"] = (lite, 1, size)

    rows = []
    for name, (fn, batch, size) in methods.items():
        probabilities = _batches(fn, audio, lengths, batch)  # also the untimed warm-up
        one = (audio[:1], lengths[:1])
        np.asarray(fn(*one)[0])
        latency = median_seconds(lambda: np.asarray(fn(*one)[0]), 10 * args.repeats)
        total = median_seconds(lambda: _batches(fn, audio, lengths, batch), args.repeats)
        rows.append((name, probabilities, size, latency, len(audio) / total))
        print(f"{name}: accuracy {(probabilities.argmax(1) == labels).mean():.1%}, {size:,} bytes,"
              f" {1000 * latency:.1f} ms per clip, {len(audio) / total:.1f} clips/s", flush=True)

    seconds = audio.shape[1] / reference.sample_rate
    base = rows[1]  # LiteRT float32: what int8 is measured against
    print(f"\n{args.workdir}, {args.split} split: {len(audio)} clips of {seconds:g} s stored "
          f"(mean real length {lengths.mean() / reference.sample_rate:.1f} s)\n")
    print("| model | test accuracy | top genre = JAX's | size (MB) | smaller than LiteRT float | "
          "latency, one clip (ms) | faster than LiteRT float | clips/s | throughput vs LiteRT "
          "float |")
    print("|---|---|---|---|---|---|---|---|---|")
    for name, probabilities, size, latency, rate in rows:
        accuracy = (probabilities.argmax(1) == labels).mean()
        agree = (probabilities.argmax(1) == rows[0][1].argmax(1)).mean()
        print(f"| {name} | {accuracy:.1%} | {agree:.1%} | {size / 1e6:.2f} | "
              f"{base[2] / size:.2f}x | {1000 * latency:.1f} | {base[3] / latency:.2f}x | "
              f"{rate:.1f} | {rate / base[4]:.2f}x |")


if __name__ == "__main__":
    main()
