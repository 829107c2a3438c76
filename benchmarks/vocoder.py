"""Mel -> audio: our jitted inverse (jaxgenre.audio.vocoder) against librosa's `mel_to_audio`, on real
clips, for quality (spectral convergence, step by step) and speed (clips/s), in one run.

  python ../shared/realmusic/make_devset.py /work/devset   # once
  python -m benchmarks.vocoder --manual_dir /work/devset [--clips 24] [--batch 16]

Same mel parameters (22.05 kHz, n_fft 2048, hop 512, 128 Slaney mels, power 2) and iteration
count (32, momentum 0.99) on both sides. Spectral convergence (SC) = ||S - S_hat||_F / ||S||_F
on the linear STFT magnitude S of the original clip; lower is better. Steps:
  mel -> linear: the magnitude from the mel alone (NNLS) against S;
  ... + true phase: that magnitude with the clip's own phase, to audio and back;
  Griffin-Lim on S: random initial phase, the true magnitude;
  whole path: mel -> audio, random initial phase (ours also from the source clip's phase).
"""
import argparse
import glob
import os
import statistics

import jax
import jax.numpy as jnp
import librosa
import numpy as np

from benchmarks.common import machine, median_seconds
from jaxgenre.audio import frontend, vocoder

SR, N_FFT, HOP, N_MELS, N_ITER = 22050, 2048, 512, 128, 32


def load_clips(manual_dir: str, count: int, seconds: float) -> np.ndarray:
    """`count` clips spread over the release's MP3s, `seconds` from each one's middle: [n, N]."""
    paths = sorted(glob.glob(os.path.join(manual_dir, "fma_small", "*", "*.mp3")))
    clips, n = [], int(seconds * SR)
    for path in paths[::max(1, len(paths) // (2 * count))]:
        try:
            y, _ = librosa.load(path, sr=SR, mono=True)
        except (RuntimeError, EOFError, ValueError) as e:  # the dev set has broken files on purpose
            print(f"skipped {path}: {e}")
            continue
        if len(y) >= n and np.abs(y).max() > 1e-3:
            start = (len(y) - n) // 2
            clips.append(y[start:start + n])
        if len(clips) == count:
            break
    return np.stack(clips).astype(np.float32)


def sc(magnitude: np.ndarray, estimate: np.ndarray) -> float:
    return float(np.linalg.norm(magnitude - estimate) / np.linalg.norm(magnitude))


def stft_mag(y: np.ndarray) -> np.ndarray:
    return np.abs(librosa.stft(y, n_fft=N_FFT, hop_length=HOP, pad_mode="constant"))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--manual_dir", required=True, help="An FMA-layout release (the dev set).")
    ap.add_argument("--clips", type=int, default=24, help="Clips for the quality figures.")
    ap.add_argument("--batch", type=int, default=16, help="Clips per batch for the speed figures.")
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--repeats", type=int, default=3)
    a = ap.parse_args()
    print(f"machine: {machine()}; jax {jax.__version__} on {jax.devices()[0].platform}, "
          f"librosa {librosa.__version__}")
    clips = load_clips(a.manual_dir, max(a.clips, a.batch), a.seconds)
    num_samples = clips.shape[1]
    cfg = frontend.MelConfig(sample_rate=SR, n_fft=N_FFT, hop_length=HOP, n_mels=N_MELS,
                             top_db=None, ref=1.0)
    vcfg = vocoder.VocoderConfig(n_iter=N_ITER)
    to_db = jax.jit(lambda x: frontend.log_mel(x * 32768.0, cfg))
    to_mag = jax.jit(lambda d: vocoder.mel_to_magnitude(vocoder.db_to_mel_power(d, cfg), cfg,
                                                        vcfg.nnls_steps))
    with_phase = jax.jit(lambda m, x: vocoder.istft(
        m * vocoder.unit_phase(frontend.stft(x, cfg)), cfg, num_samples))
    gl_true = jax.jit(lambda m, k: vocoder.griffin_lim(
        m, cfg, vcfg, num_samples, jnp.exp(2j * np.pi * jax.random.uniform(k, m.shape))))
    invert = jax.jit(lambda d, k: vocoder.log_mel_to_audio(d, cfg, vcfg, num_samples, key=k))
    invert_src = jax.jit(lambda d, x: vocoder.log_mel_to_audio(d, cfg, vcfg, num_samples,
                                                               phase_audio=x))

    # ------------------------------------------------------------ quality, clip by clip
    rows = {k: [] for k in ("mel_linear", "true_phase", "gl_true", "whole", "whole_source")}
    ref_rows = {k: [] for k in ("mel_linear", "true_phase", "gl_true", "whole")}
    rng = np.random.default_rng(0)
    for i, y in enumerate(clips[:a.clips]):
        spec = librosa.stft(y, n_fft=N_FFT, hop_length=HOP, pad_mode="constant")
        mag = np.abs(spec)
        mel = librosa.feature.melspectrogram(S=mag ** 2, sr=SR, n_mels=N_MELS)
        db = to_db(y[None])
        ours_mag = np.asarray(to_mag(db))[0].T
        rows["mel_linear"].append(sc(mag, ours_mag))
        rows["true_phase"].append(sc(mag, stft_mag(np.asarray(with_phase(ours_mag.T[None], y[None]))[0])))
        rows["gl_true"].append(sc(mag, stft_mag(np.asarray(gl_true(mag.T[None], jax.random.key(i)))[0])))
        rows["whole"].append(sc(mag, stft_mag(np.asarray(invert(db, jax.random.key(i)))[0])))
        rows["whole_source"].append(sc(mag, stft_mag(np.asarray(invert_src(db, y[None]))[0])))
        lin = librosa.feature.inverse.mel_to_stft(mel, sr=SR, n_fft=N_FFT)
        ref_rows["mel_linear"].append(sc(mag, lin))
        ref_rows["true_phase"].append(sc(mag, stft_mag(librosa.istft(
            lin * np.exp(1j * np.angle(spec)), hop_length=HOP, n_fft=N_FFT, length=num_samples))))
        ref_rows["gl_true"].append(sc(mag, stft_mag(librosa.griffinlim(
            mag, n_iter=N_ITER, hop_length=HOP, n_fft=N_FFT, length=num_samples, random_state=rng))))
        ref_rows["whole"].append(sc(mag, stft_mag(librosa.feature.inverse.mel_to_audio(
            mel, sr=SR, n_fft=N_FFT, hop_length=HOP, n_iter=N_ITER, length=num_samples))))
    print(f"\nspectral convergence, median over {a.clips} real clips of {a.seconds:g} s "
          f"(n_fft {N_FFT}, hop {HOP}, {N_MELS} mels, {N_ITER} Griffin-Lim iterations; lower is better)")
    print(f"{'step':<34}{'ours':>8}{'librosa':>9}")
    labels = {"mel_linear": "mel -> linear magnitude", "true_phase": "mel -> linear + true phase",
              "gl_true": "Griffin-Lim on true magnitude", "whole": "whole path (random phase)",
              "whole_source": "whole path (source phase)"}
    for key, label in labels.items():
        theirs = f"{statistics.median(ref_rows[key]):9.3f}" if key in ref_rows else f"{'-':>9}"
        print(f"{label:<34}{statistics.median(rows[key]):8.3f}{theirs}")
    gap = statistics.median(rows["whole"]) - statistics.median(ref_rows["whole"])
    print(f"whole path, ours - librosa: {gap:+.3f} (bar: <= +0.02)")
    print("\nmel -> linear magnitude by the number of projected-gradient steps (0: clipped "
          "pseudo-inverse alone), median SC and time for one batch:")
    batch_db = to_db(clips[:a.batch])
    for steps in (0, 10, 30, 100, 300):
        fn = jax.jit(lambda d, n=steps: vocoder.mel_to_magnitude(vocoder.db_to_mel_power(d, cfg),
                                                                 cfg, n))
        scs = [sc(np.abs(librosa.stft(y, n_fft=N_FFT, hop_length=HOP, pad_mode="constant")),
                  np.asarray(fn(to_db(y[None])))[0].T) for y in clips[:a.clips]]
        jax.block_until_ready(fn(batch_db))
        seconds = median_seconds(lambda f=fn: jax.block_until_ready(f(batch_db)), a.repeats)
        print(f"  {steps:4d} steps: SC {statistics.median(scs):.3f}, {seconds:.2f} s per batch of "
              f"{len(batch_db)}")

    # ------------------------------------------------------------ speed, one batch
    batch = clips[:a.batch]
    db = to_db(batch)
    key = jax.random.key(0)
    jax.block_until_ready(invert(db, key))  # compile
    ours_s = median_seconds(lambda: jax.block_until_ready(invert(db, key)), a.repeats)
    mels = [librosa.feature.melspectrogram(y=y, sr=SR, n_fft=N_FFT, hop_length=HOP, n_mels=N_MELS)
            for y in batch]
    theirs_s = median_seconds(lambda: [librosa.feature.inverse.mel_to_audio(
        m, sr=SR, n_fft=N_FFT, hop_length=HOP, n_iter=N_ITER, length=num_samples) for m in mels],
        max(1, a.repeats // 2))
    ours_rate, theirs_rate = len(batch) / ours_s, len(batch) / theirs_s
    print(f"\nspeed, batch of {len(batch)} clips x {a.seconds:g} s: ours median of {a.repeats} "
          f"runs, librosa median of {max(1, a.repeats // 2)} runs over the batch, clip by clip")
    print(f"ours (jit, batched): {ours_rate:7.2f} clips/s")
    print(f"librosa mel_to_audio: {theirs_rate:6.2f} clips/s")
    print(f"ratio: {ours_rate / theirs_rate:.2f}x (bar: >= 3x)")


if __name__ == "__main__":
    main()
