"""What a transfer kept of its input, and how far its outputs are from real clips.

  chroma similarity: frame-wise cosine of 12-bin chroma (librosa's chroma filters on our STFT),
    mean over the frames where the input sounds; 1 = the same harmony.
  onset F1: librosa's onset detector on input and output, matched by mir_eval at +-50 ms.
  log-mel distance: RMS difference in dB of the fixed-reference log-mels; 0 = the same spectrum.
  Frechet distance: between Gaussian fits of two embedding sets (as Frechet Audio Distance, but
    on a genre judge's features: call it FD-judge).
  clipped fraction: the share of an output's samples at or beyond full scale (what a 16-bit
    file would clip).
  edge burst: the louder of an output's first and last 100 ms over its median 100 ms frame, in
    RMS dB: a burst at the clip's edge (padding artefacts) stands out by tens of dB.
  steady tone: the largest loss, over mel bands, of a band's dynamic range from input to
    output (its floor, the 10th percentile over frames in dB, rising more than its peaks, the
    90th): a constant line added at every frame fills its band's quiet frames, where an EQ
    moves a band's quiet and loud frames alike.
  clip standard error: the standard error of a mean over pairs with the clip as the unit (the
    pairs of one input are not independent).
"""
import functools

import jax
import jax.numpy as jnp
import librosa
import mir_eval
import numpy as np
import scipy.linalg
from jax.sharding import PartitionSpec as P

from jaxgenre.audio import chroma, frontend
from jaxgenre.core import sharding

ONSET_WINDOW_S = 0.05


def _content_local(source, output, num_samples, mel):
    """source, output: float32 [B, N] in [-1, 1], num_samples int32 [B] (the real audio) ->
    (chroma similarity, log-mel RMS dB, steady tone dB), each [B]."""
    chroma_sim = chroma.chroma_similarity(chroma.chromagram(source, mel),
                                          chroma.chromagram(output, mel))
    a, b = frontend.log_mel(source * 32768.0, mel), frontend.log_mel(output * 32768.0, mel)
    # over the frames of real audio only: a clip's zero padding is no band's floor
    real = (jnp.arange(a.shape[1])[None, :] <= num_samples[:, None] // mel.hop_length)[..., None]

    def floor_and_peak(db):  # [B, T, M] -> [2, B, M]
        return jnp.nanpercentile(jnp.where(real, db, jnp.nan), jnp.array([10.0, 90.0]), axis=1)
    (floor_a, peak_a), (floor_b, peak_b) = floor_and_peak(a), floor_and_peak(b)
    range_lost = (floor_b - floor_a) - (peak_b - peak_a)  # [B, M]
    return chroma_sim, jnp.sqrt(jnp.mean((a - b) ** 2, axis=(1, 2))), range_lost.max(axis=1)


def content_fn(mel: frontend.MelConfig, mesh: jax.sharding.Mesh):
    """Jitted (source [B, N], output [B, N], num_samples [B]) -> (chroma_similarity,
    logmel_distance, steady_tone), each [B], per example on each device (`mel` must have a
    fixed `ref`)."""
    spec = P(sharding.DATA_AXIS)
    fn = jax.shard_map(functools.partial(_content_local, mel=mel), mesh=mesh,
                       in_specs=(spec,) * 3, out_specs=(spec,) * 3)
    data = sharding.batch_sharding(mesh)
    return jax.jit(fn, in_shardings=(data,) * 3, out_shardings=(data,) * 3)


def onsets(audio: np.ndarray, sample_rate: int) -> np.ndarray:
    """Onset times in seconds: float [N] -> float [K]."""
    return librosa.onset.onset_detect(y=np.asarray(audio, np.float32), sr=sample_rate, units="time")


def onset_f1(reference: np.ndarray, estimate: np.ndarray) -> float:
    """F-measure of onset times at +-50 ms (mir_eval); 1.0 when neither has onsets."""
    if len(reference) == 0 and len(estimate) == 0:
        return 1.0
    if len(reference) == 0 or len(estimate) == 0:
        return 0.0
    return float(mir_eval.onset.f_measure(reference, estimate, window=ONSET_WINDOW_S)[0])


def frechet_distance(a: np.ndarray, b: np.ndarray) -> float:
    """Frechet distance between Gaussian fits of a [n, D] and b [m, D] (float64 inside)."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    mu_a, mu_b = a.mean(0), b.mean(0)
    cov_a, cov_b = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    covmean = scipy.linalg.sqrtm(cov_a @ cov_b)
    if not np.isfinite(covmean).all():  # singular product (few samples): regularise, as FID does
        eps = 1e-6 * np.eye(len(mu_a))
        covmean = scipy.linalg.sqrtm((cov_a + eps) @ (cov_b + eps))
    if np.iscomplexobj(covmean):
        covmean = covmean.real  # rounding makes tiny imaginary parts
    return float(np.sum((mu_a - mu_b) ** 2) + np.trace(cov_a + cov_b - 2.0 * covmean))


EDGE_SECONDS = 0.1


def clipped_fraction(audio: np.ndarray, length: int) -> float:
    """Share of the first `length` samples of float [N] `audio` with |x| >= 1."""
    return float(np.mean(np.abs(audio[:length]) >= 1.0)) if length else 0.0


def edge_burst_db(audio: np.ndarray, length: int, sample_rate: int) -> float:
    """max(RMS of the first, of the last EDGE_SECONDS of the first `length` samples) / the
    median RMS of its EDGE_SECONDS frames, in dB (0 for a steady signal, or one of under three
    frames; a silent clip's frames floor at -120 dBFS)."""
    frame = max(round(EDGE_SECONDS * sample_rate), 1)
    frames = length // frame
    if frames < 3:
        return 0.0
    x = np.asarray(audio[:length], np.float64)

    def rms(a):
        return np.maximum(np.sqrt(np.mean(a ** 2, axis=-1)), 1e-6)
    median = np.median(rms(x[:frames * frame].reshape(frames, frame)))
    return float(20 * np.log10(max(rms(x[:frame]), rms(x[-frame:])) / median))


def clip_standard_error(values: np.ndarray, clip_ids: np.ndarray) -> float | None:
    """Standard error of the mean of `values` [P] (one per pair), pairs grouped by `clip_ids`
    [P]: the standard deviation (ddof 1) of the per-clip means over sqrt(number of clips);
    None for fewer than two clips."""
    clips = np.unique(clip_ids)
    if len(clips) < 2:
        return None
    means = np.array([np.mean(values[clip_ids == c]) for c in clips], np.float64)
    return float(np.std(means, ddof=1) / np.sqrt(len(clips)))
