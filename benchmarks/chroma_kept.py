"""What the vocoder keeps of a clip's harmony, by mel resolution, and how closely the GAN's
harmony term (`gan_losses.chroma_kept`, no vocoder) predicts it.

  python -m benchmarks.chroma_kept [--n_mels 64,128] [--seconds 3]

One synthetic clip per fma/demo style (`tfds_fma.fma.demo.synthesize`, seed 5), 22.05 kHz,
n_fft 2048, hop 512, the fixed-reference log-mel. For each edit of the log-mel (none; bass cut:
-15 dB on the lowest eighth of the bands; treble boost: +12 dB above the middle band; smooth:
random gains, 8 x 8 blocks of bands x frames, sigma 8 dB), the edited log-mel goes through the
evaluator's vocoder (defaults, Griffin-Lim from the clip's own phase) and the chroma similarity
to the clip is measured as the transfer evaluator measures it; `chroma_kept` estimates it from
the clip's spectrum and the edit. Prints the medians over clips of both, per edit.
"""
import argparse

import jax.numpy as jnp
import numpy as np

from benchmarks.common import machine
from jaxgenre.audio import frontend, vocoder
from jaxgenre.audio.chroma import chroma_similarity
from jaxgenre.tasks import gan_losses
from tfds_fma.fma import demo


def edits(num_frames: int, n_mels: int) -> dict[str, np.ndarray]:
    bands = np.arange(n_mels)
    block = max(n_mels // 16, 1)
    smooth = np.random.default_rng(0).normal(0, 8, (num_frames // 8 + 1, n_mels // block + 1))
    return {"none": np.zeros(n_mels), "bass cut": np.where(bands < n_mels // 8, -15.0, 0.0),
            "treble boost": np.where(bands > n_mels // 2, 12.0, 0.0),
            "smooth": np.repeat(np.repeat(smooth, 8, 0), block, 1)[:num_frames, :n_mels]}


def run(n_mels: int, clips: np.ndarray) -> dict[str, tuple[float, float]]:
    cfg = frontend.MelConfig(n_mels=n_mels, ref=1.0)
    x = jnp.asarray(clips)
    power = frontend.power_spectrogram(x * 32768, cfg)
    db = frontend.compress(power, cfg)
    chroma_fb = frontend.chroma_filterbank(cfg)

    def chroma(audio):
        return jnp.abs(frontend.stft(audio, cfg)) ** 2 @ chroma_fb

    out = {}
    for name, edit in edits(db.shape[1], n_mels).items():
        gain = jnp.broadcast_to(jnp.asarray(edit, jnp.float32), db.shape)
        estimate = gan_losses.chroma_kept(power, gain, cfg)
        audio = vocoder.log_mel_to_audio(db + gain, cfg, vocoder.VocoderConfig(), clips.shape[1],
                                         phase_audio=x)
        measured = chroma_similarity(chroma(x), chroma(audio))
        out[name] = (float(np.median(measured)), float(np.median(estimate)),
                     float(np.min(measured)), float(np.max(measured)))
    return out


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n_mels", default="64,128")
    parser.add_argument("--seconds", type=float, default=3.0)
    args = parser.parse_args()
    rng = np.random.default_rng(5)
    clips = 0.5 * np.stack([demo.synthesize(g, args.seconds, 22050, rng) for g in demo.GENRES])
    print(f"machine: {machine()}; {len(clips)} clips of {args.seconds} s (one per demo style)")
    print("| mel bands | edit | measured (median) | estimated (median) | measured min-max |")
    print("|---|---|---|---|---|")
    for n_mels in (int(n) for n in args.n_mels.split(",")):
        for name, (measured, estimate, low, high) in run(n_mels, clips.astype(np.float32)).items():
            print(f"| {n_mels} | {name} | {measured:.3f} | {estimate:.3f} | {low:.3f}-{high:.3f} |")


if __name__ == "__main__":
    main()
