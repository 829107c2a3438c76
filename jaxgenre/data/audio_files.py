"""Audio files from a user: found in directories and read at a run's rate, with errors that name
the file and the problem (the transfer and predict CLIs share them), and audio made safe to
write as 16-bit PCM."""
import os
import warnings

import numpy as np
from etils import epath

PEAK = 32767 / 32768  # the largest int16 sample, on the float scale

# What `find` collects from a directory; a file named on its own is read whatever its name.
EXTENSIONS = (".wav", ".flac", ".mp3", ".ogg", ".m4a", ".aiff", ".aif", ".au")


def find(paths: list[str]) -> list[str]:
    """Files named in `paths` as given (in order, whatever their extension, even missing ones, so
    that reading reports them), each directory replaced by its audio files (EXTENSIONS, any
    case) at any depth, sorted."""
    found = []
    for path in paths:
        if os.path.isdir(path):
            found += sorted(os.path.join(root, name) for root, _, names in os.walk(path)
                            for name in names if name.lower().endswith(EXTENSIONS))
        else:
            found.append(path)
    return found


def read(path: str, sample_rate: int) -> np.ndarray:
    """Any format librosa reads, resampled to `sample_rate` and mixed to mono.

    Returns float32 [N], N > 0, in [-1, 1] for PCM input. Raises FileNotFoundError for a missing
    file and ValueError for one that does not decode or holds no samples; each message names
    the file.
    """
    import librosa  # slow to import; only the CLIs that read audio need it
    if not epath.Path(path).exists():
        raise FileNotFoundError(f"{path}: no such file.")
    try:
        # librosa warns as it falls back from soundfile to audioread; the error below says more.
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            audio, _ = librosa.load(path, sr=sample_rate, mono=True)
    except Exception as e:  # noqa: BLE001 - every decoder failure reads the same to a user
        why = f"{type(e).__name__}: {e}" if str(e) else type(e).__name__
        raise ValueError(f"Cannot read {path} as audio ({why}); pass a file librosa reads "
                         "(wav, flac, ogg, mp3).") from None
    if audio.size == 0:
        raise ValueError(f"{path} holds no audio samples.")
    return audio.astype(np.float32)



def peak_safe(audio: np.ndarray) -> tuple[np.ndarray, float]:
    """(audio scaled down to peak at `PEAK` where it would clip as 16-bit PCM, the gain applied
    in dB: 0.0 where nothing was changed). Never scaled up; never clipped."""
    peak = float(np.abs(audio).max()) if audio.size else 0.0
    if peak <= PEAK:
        return audio, 0.0
    return (audio * (PEAK / peak)).astype(np.float32), float(20.0 * np.log10(PEAK / peak))
