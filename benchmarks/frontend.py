"""Frontend: our jitted log-mel against librosa on the same batch, on this CPU.

  python benchmarks/frontend.py [--batch 64] [--repeats 5]

Parameters are the training config's (configs/mobilenet.py): 3 s crops at 22,050 Hz,
n_fft 2048, hop 512, 128 mels. librosa runs example by example, as a data pipeline would.
"""
import argparse

import jax
import librosa
import numpy as np
from jaxgenre.configs import mobilenet

from benchmarks.common import machine, median_seconds
from jaxgenre.audio import frontend
from jaxgenre.tasks import classifier
from tfds_fma.fma import demo


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--repeats", type=int, default=5)
    a = ap.parse_args()
    config = mobilenet.get_config()
    mel = classifier.mel_config(config, 22050)
    rng = np.random.default_rng(0)
    seconds = config.data.crop_seconds
    audio = np.stack([demo.synthesize(demo.GENRES[i % 8], seconds, 22050, rng)
                      for i in range(a.batch)])
    pcm = np.round(audio * 32767).astype(np.int16)
    floats = pcm.astype(np.float32) / 32768
    f = config.frontend

    def ours():
        fn(pcm).block_until_ready()

    def peer():
        for y in floats:
            m = librosa.feature.melspectrogram(y=y, sr=22050, n_fft=f.n_fft, hop_length=f.hop_length,
                                               n_mels=f.n_mels, fmin=f.fmin, fmax=f.fmax)
            librosa.power_to_db(m, ref=np.max, top_db=f.top_db)

    print(f"machine: {machine()}; jax {jax.__version__} on {jax.devices()[0].platform}")
    print(f"batch {a.batch} x {seconds} s at 22050 Hz, n_fft {f.n_fft}, hop {f.hop_length}, "
          f"{f.n_mels} mels; median of {a.repeats}")
    results = {}
    for dft in ("fft", "matmul"):
        cfg = mel.__class__(**{**mel.__dict__, "dft": dft})
        fn = jax.jit(lambda x, cfg=cfg: frontend.log_mel(x, cfg))
        ours()
        results[dft] = a.batch / median_seconds(ours, a.repeats)
    peer()
    librosa_rate = a.batch / median_seconds(peer, a.repeats)
    print(f"librosa:               {librosa_rate:8.1f} clips/s")
    for dft, rate in results.items():
        print(f"ours (dft={dft:6s}):    {rate:8.1f} clips/s   ratio {rate / librosa_rate:.2f}x")


if __name__ == "__main__":
    main()
