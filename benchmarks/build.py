"""Build: decoding throughput with all cores against one core, on the same MP3s.

  python benchmarks/build.py --manual_dir DIR [--clips 200]

Times the builder's decode stage (`_decode_all`: read from the zip or folder, decode MP3,
resample with soxr, crop/pad to int16), which is what the build spends its time on.
"""
import argparse
import io
import os
import time

from benchmarks.common import machine
from tfds_fma.fma import archive, metadata
from tfds_fma.fma.fma_dataset_builder import _decode_all


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--manual_dir", required=True)
    ap.add_argument("--clips", type=int, default=200)
    a = ap.parse_args()
    fma = archive.FmaArchive.locate(a.manual_dir, "small")
    tracks = metadata.read_tracks(io.BytesIO(fma.read_metadata("tracks.csv")), "small")
    ids = [t.track_id for t in tracks][: a.clips]
    rates = {}
    for workers in (1, os.cpu_count()):
        start = time.perf_counter()
        n = sum(1 for _ in _decode_all(fma, ids, 22050, 30.0, workers=workers))
        rates[workers] = n / (time.perf_counter() - start)
    print(f"machine: {machine()}")
    print(f"{len(ids)} clips from {fma.audio}")
    for workers, rate in rates.items():
        print(f"{workers} worker(s): {rate:7.1f} clips/s")
    print(f"speed-up with all cores: {rates[os.cpu_count()] / rates[1]:.2f}x")


if __name__ == "__main__":
    main()
