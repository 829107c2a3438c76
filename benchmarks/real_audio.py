"""Real audio: build FMA-layout real music with our builder and check it against soundfile+soxr.

  python ../shared/realmusic/make_devset.py /work/devset   # once, ~15 min
  python benchmarks/real_audio.py --manual_dir /work/devset --data_dir /work/data_dev

Reports build time, the skipped files and why, and the correlation between our stored audio
and an independent decode (soundfile -> mono mean -> soxr HQ -> int16) of every built clip.
"""
import argparse
import io
import shutil
import time

import numpy as np
import soundfile as sf
import soxr
import tensorflow_datasets as tfds

import tfds_fma  # noqa: F401  (registers the `fma` dataset with TFDS)
from benchmarks.common import machine
from tfds_fma.fma import archive


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--manual_dir", required=True)
    ap.add_argument("--data_dir", required=True)
    a = ap.parse_args()
    shutil.rmtree(f"{a.data_dir}/fma/small", ignore_errors=True)
    builder = tfds.builder("fma/small", data_dir=a.data_dir)
    start = time.perf_counter()
    builder.download_and_prepare(
        download_config=tfds.download.DownloadConfig(manual_dir=a.manual_dir))
    seconds = time.perf_counter() - start
    fma = archive.FmaArchive.locate(a.manual_dir, "small")
    corrs, silent = [], []
    for split in ("train", "validation", "test"):
        for ex in tfds.as_numpy(builder.as_dataset(split=split)):
            data, rate = sf.read(io.BytesIO(fma.read_audio(int(ex["track_id"]))), dtype="float32",
                                 always_2d=True)
            ref = soxr.resample(data.mean(axis=1), rate, 22050, quality="HQ")
            n = min(int(ex["num_samples"]), len(ref))
            ours = ex["audio"][:n].astype(np.float64)
            if ours.std() == 0 or ref[:n].std() == 0:  # silence: correlation is undefined
                silent.append((int(ex["track_id"]), float(np.abs(ours / 32768 - ref[:n]).max())))
            else:
                corrs.append(np.corrcoef(ours, ref[:n])[0, 1])
    splits = {k: v.num_examples for k, v in builder.info.splits.items()}
    print(f"machine: {machine()}")
    print(f"built {sum(splits.values())} clips {splits} in {seconds:.1f} s "
          f"({sum(splits.values()) / seconds:.1f} clips/s, all cores)")
    print("skipped:")
    for s in builder.info.metadata["skipped"]:
        print(f"  {s['track_id']:06d} ({s['split']}): {s['reason']}")
    print(f"correlation with soundfile+soxr: min {min(corrs):.5f}, median {np.median(corrs):.5f} "
          f"over {len(corrs)} clips")
    for track_id, err in silent:
        print(f"  {track_id:06d} is silent in one decode; max abs difference {err:.2e}")


if __name__ == "__main__":
    main()
