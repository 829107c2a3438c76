"""Decoding one MP3 into the stored form: int16 mono PCM at the dataset's rate, fixed length."""
import concurrent.futures
import io
import os

import numpy as np
import soundfile as sf
import soxr

# Clips shorter than this are skipped: the real 30 s clips decode to ~29.98 s, and the broken
# fma_small clips to 0.5-1.6 s. Five seconds keeps any usable clip and drops those fragments.
MIN_SECONDS = 5.0


class UndecodableError(ValueError):
    """A clip that cannot be stored; the message is the reason recorded in the dataset info."""


def decode_clip(data: bytes, sample_rate: int, clip_seconds: float,
                min_seconds: float = MIN_SECONDS) -> tuple[np.ndarray, int]:
    """Decodes MP3 bytes to mono int16 at `sample_rate`, zero-padded or cropped to the clip length.

    Args:
      data: the encoded file.
      sample_rate: output rate in Hz; the source is resampled with soxr (HQ) when it differs.
      clip_seconds: the stored length; longer audio keeps its start, shorter audio is zero-padded.
      min_seconds: shorter decoded audio raises `UndecodableError`.

    Returns:
      (audio, num_samples): int16 array of shape [round(clip_seconds * sample_rate)], and the
      number of real (unpadded) samples in it.

    Raises:
      UndecodableError: empty file, decoder failure, no audio, or audio shorter than min_seconds.
    """
    if not data:
        raise UndecodableError("empty file (0 bytes)")
    try:
        audio, source_rate = sf.read(io.BytesIO(data), dtype="float32", always_2d=True)
    except (sf.LibsndfileError, RuntimeError, ValueError) as e:
        raise UndecodableError(f"cannot decode: {getattr(e, 'error_string', e)}") from e
    seconds = audio.shape[0] / source_rate
    if seconds < min_seconds:
        raise UndecodableError(f"too short: {seconds:.2f} s decoded, minimum is {min_seconds} s")
    mono = audio.mean(axis=1)
    if source_rate != sample_rate:
        mono = soxr.resample(mono, source_rate, sample_rate, quality="HQ")
    clip_samples = round(clip_seconds * sample_rate)
    num_samples = min(len(mono), clip_samples)
    out = np.zeros(clip_samples, np.int16)
    out[:num_samples] = np.round(np.clip(mono[:num_samples], -1.0, 32767 / 32768) * 32768)
    return out, num_samples


def worker_pool(workers: int | None = None) -> concurrent.futures.ThreadPoolExecutor:
    """A pool of threads for decoding and synthesis, one per core by default.

    Threads rather than processes: the heavy steps (libsndfile's MP3 decoding and encoding,
    soxr, bz2, numpy) release the GIL, so threads keep up with worker processes and skip their
    start-up (each would import TensorFlow). They also work where processes fail: 'spawn'
    workers re-run a main script that lacks an `if __name__ == "__main__":` guard, and forked
    ones would inherit the threads of JAX or TensorFlow (JAX warns that this deadlocks).
    """
    return concurrent.futures.ThreadPoolExecutor(workers or os.cpu_count())
