"""Side by side with PyTorch, in one process: train step, frontend and input pipeline.

  python benchmarks/vs_pytorch.py [--quick] [--json OUT] [--only train_step,frontend,input]
  python -m benchmarks.vs_pytorch [...]

Needs the `bench` extra (`pip install -e .[bench]`: torch, torchvision); torchaudio is measured
as one more frontend variant when it is installed. Every comparison reports ours, PyTorch's best
measured setting (the peer) and the ratio ours / peer (higher is better for us):

  train_step_mobilenetv2, train_step_resnet18 (examples/s): our jitted step
    (`benchmarks.train_step.jax_step`) against torchvision's model with a 1-channel first conv,
    same input [32, 130, 128, 1] ([32, 1, 130, 128] NCHW for torch), Adam 1e-3, cross-entropy,
    float32, train mode; PyTorch eager and `torch.compile`, contiguous and channels_last.
    Median step time over --steps steps after warm-up (torch.compile compiles in its warm-up).
  frontend (clips/s): our jitted log-mel (`jaxgenre.audio.frontend.log_mel`, the training config's
    parameters) on 64 crops of 3 s against `torch.stft` + librosa's mel matrix + librosa's
    dB steps, eager and `torch.compile`d (and torchaudio's MelSpectrogram, eager, if installed);
    librosa per clip is the reference for both sides: the median |difference| in dB is reported.
  input (examples/s): our pipeline (`input_pipeline.train_batches` on the built `fma/demo`,
    then our jitted log-mel of each batch) against a `torch.utils.data.DataLoader` (batch 32,
    2 workers, shuffle) over the same release's MP3s, extracted once to --mp3_dir: librosa.load
    at 22,050 Hz, a random 3 s crop, log-mel with torch.stft, per item in the workers.

This process sets malloc up as jaxgenre.train does (`host_memory`, before JAX, TensorFlow or
torch is imported; `JAXGENRE_MALLOC=glibc` leaves it alone); being one process, that applies to
both sides. torch
runs on os.cpu_count() threads.

--json OUT writes {comparison: {ours, peer, ratio, unit, peer_setting, peer_variants, ...},
"meta": {machine, versions, settings, wall_seconds}}.
"""
import os
import sys

if __package__ in (None, ""):  # run as a script: the repository root goes on the path
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from jaxgenre.core import cli, host_memory  # neither imports JAX or TensorFlow

# First: before JAX, TensorFlow and torch start their threads, as jaxgenre.train does.
cli.prepare_process(relaunch=__name__ == "__main__")

import argparse
import gc
import json
import logging
import time
import warnings

import jax
import jax.numpy as jnp
import librosa
import numpy as np
import torch
import torchvision
from flax import nnx
from jaxgenre.configs import mobilenet

from benchmarks import torch_peers
from benchmarks.common import machine, median_seconds
from benchmarks.train_step import jax_step
from jaxgenre import models
from jaxgenre.audio import frontend
from jaxgenre.core import sharding
from jaxgenre.data import input_pipeline
from jaxgenre.tasks import classifier
from tfds_fma.fma import demo

PARTS = ("train_step", "frontend", "input")
MODELS = {"train_step_mobilenetv2": "mobilenet_v2", "train_step_resnet18": "resnet18"}
SHAPE = (130, 128, 1)  # the log-mel of a 3 s crop: frames, mels, channel
RELEASE = os.path.expanduser("~/tensorflow_datasets/downloads/fma_demo_release")


def torchaudio_version() -> str | None:
    try:
        import torchaudio
        return torchaudio.__version__
    except (ImportError, OSError, RuntimeError):  # not installed, or built for another torch
        return None


def rate(batches, warmup: int, count: int, finish) -> float:
    """Batches per second of the iterator `batches` over `count` batches after `warmup`;
    `finish(batch)` waits for each one. Closes the iterator (its pipeline stops)."""
    for _ in range(warmup):
        finish(next(batches))
    start = time.perf_counter()
    for _ in range(count):
        finish(next(batches))
    seconds = time.perf_counter() - start
    batches.close()
    gc.collect()
    return count / seconds


def comparison(ours: float, variants: dict, unit: str, **extra) -> dict:
    measured = {k: v for k, v in variants.items() if isinstance(v, float)}
    best = max(measured, key=measured.get)
    return {"ours": ours, "peer": measured[best], "ratio": ours / measured[best], "unit": unit,
            "peer_setting": best, "peer_variants": variants, **extra}


# ------------------------------------------------------------------------------- train step
def our_param_count(name: str) -> int:
    model = models.get(name)(8, in_channels=1, rngs=nnx.Rngs(0))
    return sum(x.size for x in jax.tree.leaves(nnx.state(model, nnx.Param)))


def compare_train_step(name: str, batch: int, steps: int, warmup: int, warmup_compiled: int
                       ) -> dict:
    start = time.perf_counter()
    run, _ = jax_step(name, batch, SHAPE, jnp.float32)  # compiles
    for _ in range(warmup):
        run()
    ours_warmup_s = time.perf_counter() - start
    ours = batch / median_seconds(run, steps)
    print(f"  ours {name:22s}        {ours:8.1f} examples/s  (jit + warm-up {ours_warmup_s:.0f} s)",
          flush=True)
    del run
    gc.collect()
    variants, warmup_s, params = {}, {}, None
    shape_nchw = (SHAPE[2], SHAPE[0], SHAPE[1])
    for (compiled, channels_last), setting in torch_peers.SETTINGS.items():
        try:
            run, params = torch_peers.torch_step(name, batch, shape_nchw, compiled, channels_last)
            start = time.perf_counter()
            for _ in range(warmup_compiled if compiled else warmup):
                run()
            warmup_s[setting] = time.perf_counter() - start
            variants[setting] = batch / median_seconds(run, steps)
        except (RuntimeError, OSError) as e:  # e.g. torch.compile without a working C compiler
            variants[setting] = f"failed: {type(e).__name__}: {str(e).splitlines()[0][:200]}"
        result = variants[setting]
        print(f"  torch {name:13s} {setting:22s} "
              + (f"{result:8.1f} examples/s  (warm-up {warmup_s[setting]:.0f} s)"
                 if isinstance(result, float) else result), flush=True)
        run = None
        gc.collect()
    return comparison(ours, variants, "examples/s", ours_warmup_seconds=ours_warmup_s,
                      peer_warmup_seconds=warmup_s,
                      params={"ours": our_param_count(name), "peer": params},
                      steps=steps, batch=batch)


# ---------------------------------------------------------------------------------- frontend
def compare_frontend(batch: int, repeats: int) -> dict:
    config = mobilenet.get_config()
    mel = classifier.mel_config(config, 22050)
    f = config.frontend
    rng = np.random.default_rng(0)
    seconds = config.data.crop_seconds
    audio = np.stack([demo.synthesize(demo.GENRES[i % 8], seconds, 22050, rng)
                      for i in range(batch)])
    pcm = np.round(audio * 32767).astype(np.int16)
    floats = pcm.astype(np.float32) / 32768

    fn = jax.jit(lambda x: frontend.log_mel(x, mel))
    ours_db = np.asarray(fn(pcm)).transpose(0, 2, 1)  # [B, n_mels, T], as the others
    ours = batch / median_seconds(lambda: fn(pcm).block_until_ready(), repeats)
    print(f"  ours (jitted log-mel, dft={mel.dft})    {ours:8.1f} clips/s", flush=True)

    def librosa_db():
        return np.stack([librosa.power_to_db(librosa.feature.melspectrogram(
            y=y, sr=22050, n_fft=f.n_fft, hop_length=f.hop_length, n_mels=f.n_mels, fmin=f.fmin,
            fmax=f.fmax), ref=np.max, top_db=f.top_db) for y in floats])
    reference = librosa_db()
    librosa_rate = batch / median_seconds(librosa_db, repeats)
    print(f"  librosa (per clip, reference)    {librosa_rate:8.1f} clips/s", flush=True)

    diff = {"ours": float(np.median(np.abs(ours_db - reference)))}
    variants, outputs = {}, {}
    x = torch.from_numpy(floats)
    kinds = {"torch.stft eager": (False, False), "torch.stft compile": (False, True)}
    if torchaudio_version():
        kinds["torchaudio eager"] = (True, False)
    for setting, (use_torchaudio, compiled) in kinds.items():
        log_mel = torch_peers.TorchLogMel(22050, f.n_fft, f.hop_length, f.n_mels, f.fmin, f.fmax,
                                          f.top_db, torchaudio=use_torchaudio)
        call = torch.compile(log_mel.__call__) if compiled else log_mel
        try:
            outputs[setting] = call(x).numpy()  # compiles
            call(x)
            variants[setting] = batch / median_seconds(lambda call=call: call(x), repeats)
        except (RuntimeError, OSError) as e:  # e.g. torch.compile without a working C compiler
            variants[setting] = f"failed: {type(e).__name__}: {str(e).splitlines()[0][:200]}"
            print(f"  {setting:32s} {variants[setting]}", flush=True)
            continue
        diff[setting] = float(np.median(np.abs(outputs[setting] - reference)))
        print(f"  {setting:32s} {variants[setting]:8.1f} clips/s", flush=True)
    result = comparison(ours, variants, "clips/s", librosa=librosa_rate,
                        median_abs_diff_db_vs_librosa=diff, batch=batch, repeats=repeats)
    result["median_abs_diff_db_ours_vs_peer"] = float(np.median(np.abs(
        ours_db - outputs[result["peer_setting"]])))
    print("  median |dB - librosa|: " + ", ".join(f"{k} {v:.2e}" for k, v in diff.items())
          + f"; |ours - peer| {result['median_abs_diff_db_ours_vs_peer']:.2e}", flush=True)
    return result


# ------------------------------------------------------------------------------------- input
def compare_input(batches: int, warmup: int, mp3_dir: str, workers: int) -> dict:
    config = mobilenet.get_config()
    builder = input_pipeline.load_builder("fma/demo", None)
    sr = builder.info.features["audio"].sample_rate
    crop = int(config.data.crop_seconds * sr)
    batch = 32
    mel = classifier.mel_config(config, sr)
    f = config.frontend

    # ours: built TFDS dataset -> int16 crops on device -> jitted log-mel
    mesh = sharding.make_mesh()
    fn = jax.jit(lambda x: frontend.log_mel(x, mel, mesh=None))
    ours_batches = (fn(b["audio"]) for b in input_pipeline.train_batches(
        builder, "train", batch, crop, config.seed, 0, mesh, config.data.shuffle_buffer))
    ours = batch * rate(ours_batches, warmup, batches, lambda x: x.block_until_ready())
    print(f"  ours (train_batches + jitted log-mel)       {ours:8.1f} examples/s", flush=True)

    # peer: DataLoader over the extracted MP3s (extraction is outside the timing)
    start = time.perf_counter()
    root = torch_peers.extract_release(RELEASE, mp3_dir)
    extract_s = time.perf_counter() - start
    paths, labels, _ = torch_peers.fma_split(root, "training")
    dataset = torch_peers.Mp3LogMels(paths, labels, sr, crop, torch_peers.TorchLogMel(
        sr, f.n_fft, f.hop_length, f.n_mels, f.fmin, f.fmax, f.top_db))
    loader = torch.utils.data.DataLoader(dataset, batch_size=batch, shuffle=True,
                                         num_workers=workers, drop_last=True,
                                         persistent_workers=True)
    expected = (batch, f.n_mels, 1 + crop // f.hop_length)

    def check(xy):
        assert tuple(xy[0].shape) == expected, xy[0].shape
    peer = batch * rate((xy for _ in iter(int, 1) for xy in loader), warmup, batches, check)
    del loader  # stops the workers
    gc.collect()
    setting = f"DataLoader(num_workers={workers}), librosa.load + torch.stft"
    print(f"  torch {setting}  {peer:8.1f} examples/s  "
          f"({len(paths)} MP3s, extracted in {extract_s:.1f} s)", flush=True)
    return comparison(ours, {setting: peer}, "examples/s", batches=batches, batch=batch,
                      num_files=len(paths))


# ------------------------------------------------------------------------------------- main
def table(results: dict) -> str:
    rows = [("comparison", "unit", "ours", "peer", "ratio", "peer setting")]
    for key, r in results.items():
        rows.append((key, r["unit"], f"{r['ours']:.1f}", f"{r['peer']:.1f}",
                     f"{r['ratio']:.2f}x", r["peer_setting"]))
    widths = [max(len(row[i]) for row in rows) for i in range(5)]
    lines = []
    for row in rows:
        cells = [row[0].ljust(widths[0]), row[1].ljust(widths[1])]
        cells += [c.rjust(w) for c, w in zip(row[2:5], widths[2:5])]
        lines.append("  ".join(cells + [row[5]]))
    lines.insert(1, "-" * len(lines[0]))
    return "\n".join(lines)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="fewer steps and clips (< 10 min on 2 cores)")
    ap.add_argument("--json", help="write the results here")
    ap.add_argument("--only", default=",".join(PARTS), help=f"comma-separated subset of {PARTS}")
    ap.add_argument("--steps", type=int, help="timed train steps (default 5 quick, 20 full)")
    ap.add_argument("--batch", type=int, default=32, help="train step batch")
    ap.add_argument("--mp3_dir", default="/tmp/fma_demo_mp3", help="where the peer's MP3s go")
    ap.add_argument("--workers", type=int, default=2, help="the peer DataLoader's num_workers")
    a = ap.parse_args()
    parts = a.only.split(",")
    if unknown := set(parts) - set(PARTS):
        ap.error(f"unknown --only parts {sorted(unknown)}; valid: {PARTS}")
    q = a.quick
    settings = {"quick": q, "train_steps": a.steps or (5 if q else 20), "train_warmup": 2,
                "train_warmup_compiled": 3, "frontend_batch": 64, "frontend_repeats": 5 if q else 10,
                "input_batches": 10 if q else 40, "input_warmup": 2, "workers": a.workers}
    torch.set_num_threads(os.cpu_count())
    cli.quiet_logs()
    logging.getLogger("absl").setLevel(logging.ERROR)  # TFDS deprecation notes
    logging.getLogger("torch.utils.cpp_extension").setLevel(logging.ERROR)  # "No CUDA runtime"
    warnings.filterwarnings("ignore", "Torchinductor does not support code generation for complex")
    # The DataLoader forks its workers from this process; they run librosa and torch, no JAX.
    warnings.filterwarnings("ignore", r"os\.fork\(\) was called", RuntimeWarning)
    versions = {"jax": jax.__version__, "torch": torch.__version__,
                "torchvision": torchvision.__version__, "torchaudio": torchaudio_version(),
                "librosa": librosa.__version__}
    start = time.perf_counter()
    print(f"machine: {machine()}")
    print("versions: " + ", ".join(f"{k} {v}" for k, v in versions.items() if v)
          + f"; jax on {jax.devices()[0].platform}, torch threads {torch.get_num_threads()}")
    print(f"malloc (jaxgenre.core.host_memory, both sides): {host_memory.active()}; "
          + ", ".join(f"{k}={v}" for k, v in settings.items()), flush=True)

    results = {}
    if "train_step" in parts:
        print(f"train step: batch {a.batch}, input {list(SHAPE)} (torch NCHW), Adam 1e-3, float32, "
              f"median of {settings['train_steps']} steps", flush=True)
        for key, name in MODELS.items():
            results[key] = compare_train_step(name, a.batch, settings["train_steps"],
                                              settings["train_warmup"],
                                              settings["train_warmup_compiled"])
    if "frontend" in parts:
        print(f"frontend: {settings['frontend_batch']} clips x 3 s at 22050 Hz, n_fft 2048, "
              f"hop 512, 128 mels, median of {settings['frontend_repeats']}", flush=True)
        results["frontend"] = compare_frontend(settings["frontend_batch"],
                                               settings["frontend_repeats"])
    if "input" in parts:
        print(f"input: fma/demo train, batch 32, 3 s crops, {settings['input_batches']} batches "
              f"after {settings['input_warmup']}", flush=True)
        results["input"] = compare_input(settings["input_batches"], settings["input_warmup"],
                                         a.mp3_dir, a.workers)
    wall = time.perf_counter() - start
    print()
    print(table(results))
    print(f"ratio = ours / peer (higher is better for us); peer = PyTorch's best measured setting. "
          f"Wall time {wall / 60:.1f} min.")
    if a.json:
        out = {**results, "meta": {"machine": machine(), "versions": versions,
                                   "malloc": host_memory.active(), "settings": settings,
                                   "wall_seconds": wall}}
        with open(a.json, "w") as fh:
            json.dump(out, fh, indent=2)
        print(f"wrote {a.json}")


if __name__ == "__main__":
    main()
