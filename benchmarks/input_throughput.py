"""Input throughput: our pipeline against the classic per-example librosa path, same clips.

  python benchmarks/input_throughput.py --manual_dir DIR --data_dir DIR [--dataset fma/small]

Ours: the built TFDS dataset -> random 3 s crops -> batches of int16 waveforms. The log-mel of
those waveforms is computed later, on the accelerator, inside the train step; so we also report
our rate with the frontend's CPU time added (the worst case: a CPU-only machine).
Peer: `librosa.load` of each MP3 (resampled to the same rate) and
`librosa.feature.melspectrogram`, inside `tf.py_function`, batched the same way.
"""
import argparse
import io
import time

import jax
import librosa
import numpy as np
import tensorflow as tf
from jaxgenre.configs import mobilenet

from benchmarks.common import machine
from jaxgenre.audio import frontend
from jaxgenre.data import input_pipeline
from jaxgenre.tasks import classifier
from tfds_fma.fma import archive as archive_lib


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--manual_dir", required=True)
    ap.add_argument("--data_dir", required=True)
    ap.add_argument("--dataset", default="fma/small")
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--clips", type=int, default=256)
    a = ap.parse_args()
    config = mobilenet.get_config()
    builder = input_pipeline.load_builder(a.dataset, a.data_dir, a.manual_dir)
    sr = builder.info.features["audio"].sample_rate
    crop = int(config.data.crop_seconds * sr)
    steps = a.clips // a.batch

    # ours: built dataset -> cropped int16 batches
    ds = input_pipeline.host_train_dataset(builder, "train", a.batch, crop, seed=0)
    it = ds.as_numpy_iterator()
    next(it)  # start-up (file open, first shuffle fill) is not throughput
    start = time.perf_counter()
    for _ in range(steps):
        batch = next(it)
    ours = steps * a.batch / (time.perf_counter() - start)

    # our frontend on CPU for the same batches
    mel = classifier.mel_config(config, sr)
    fn = jax.jit(lambda x: frontend.log_mel(x, mel))
    fn(batch["audio"]).block_until_ready()
    start = time.perf_counter()
    for _ in range(steps):
        fn(batch["audio"]).block_until_ready()
    frontend_rate = steps * a.batch / (time.perf_counter() - start)
    ours_with_frontend = 1 / (1 / ours + 1 / frontend_rate)

    # peer: librosa.load + melspectrogram per example in tf.py_function
    fma = archive_lib.FmaArchive.locate(a.manual_dir, "small")
    ids = sorted(int(r["track_id"]) for r in builder.as_dataset(split="train").take(a.clips)
                 .map(lambda e: {"track_id": e["track_id"]}).as_numpy_iterator())
    f = config.frontend

    def load_and_mel(track_id):
        y, _ = librosa.load(io.BytesIO(fma.read_audio(int(track_id))), sr=sr, mono=True)
        start = np.random.randint(0, max(len(y) - crop, 1))
        m = librosa.feature.melspectrogram(y=y[start:start + crop], sr=sr, n_fft=f.n_fft,
                                           hop_length=f.hop_length, n_mels=f.n_mels)
        return librosa.power_to_db(m, ref=np.max).astype(np.float32)

    peer = tf.data.Dataset.from_tensor_slices(ids).map(
        lambda t: tf.py_function(load_and_mel, [t], tf.float32),
        num_parallel_calls=tf.data.AUTOTUNE).batch(a.batch).prefetch(2)
    start = time.perf_counter()
    n = sum(len(b) for b in peer.as_numpy_iterator())
    peer_rate = n / (time.perf_counter() - start)

    print(f"machine: {machine()}")
    print(f"dataset {a.dataset}, {sr} Hz, {config.data.crop_seconds} s crops, batch {a.batch}, "
          f"{steps * a.batch} clips")
    print(f"ours (int16 waveform batches):         {ours:9.1f} clips/s")
    print(f"our frontend on CPU (log-mel, jitted): {frontend_rate:9.1f} clips/s")
    print(f"ours + frontend on CPU:                {ours_with_frontend:9.1f} clips/s")
    print(f"peer (librosa.load + melspectrogram):  {peer_rate:9.1f} clips/s")
    print(f"ratio ours / peer: {ours / peer_rate:.1f}x; with our frontend on CPU: "
          f"{ours_with_frontend / peer_rate:.1f}x")


if __name__ == "__main__":
    main()
