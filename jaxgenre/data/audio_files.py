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
    case) at any depth, sorted; a file found twice (named and in a directory) is listed once."""
    found = []
    for path in paths:
        if os.path.isdir(path):
            found += sorted(os.path.join(root, name) for root, _, names in os.walk(path)
                            for name in names if name.lower().endswith(EXTENSIONS))
        else:
            found.append(path)
    return list(dict.fromkeys(found))  # the first place each path was found


class TooLong(ValueError):
    """The audio lasts longer than the caller takes."""


def read(path: str, sample_rate: int, max_seconds: float | None = None) -> np.ndarray:
    """Any format librosa reads, resampled to `sample_rate` and mixed to mono.

    Returns float32 [N], N > 0, in [-1, 1] for PCM input. Raises FileNotFoundError for a missing
    file and ValueError for one that does not decode, holds no samples or holds NaN or infinite
    ones; each message names the file. With `max_seconds`, at most that much and a second more
    is decoded (memory stays bounded whatever the file holds) and a longer file raises TooLong.
    """
    import librosa  # slow to import; only the CLIs that read audio need it
    if not epath.Path(path).exists():
        raise FileNotFoundError(f"{path}: no such file.")
    try:
        # librosa warns as it falls back from soundfile to audioread; the error below says more.
        # Decoded at the file's own rate and channels first: librosa's mixing and resampling
        # refuse NaN or infinite samples with a message that does not name them.
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            audio, native_rate = librosa.load(
                path, sr=None, mono=False, duration=None if max_seconds is None else max_seconds + 1)
    except Exception as e:  # noqa: BLE001 - every decoder failure reads the same to a user
        why = f"{type(e).__name__}: {e}" if str(e) else type(e).__name__
        raise ValueError(f"Cannot read {path} as audio ({why}); pass a file librosa reads "
                         "(wav, flac, ogg, mp3).") from None
    if max_seconds is not None and audio.shape[-1] > max_seconds * native_rate:
        raise TooLong(f"{path} is longer than {max_seconds:g} s.")
    return conform(audio, native_rate, sample_rate, str(path), channel_axis=0)


MAX_CHANNELS = 16  # more "channels" than this is a [channels, N] array passed as [N, channels]


def conform(audio: np.ndarray, from_rate: int, to_rate: int, what: str = "the audio",
            channel_axis: int = -1) -> np.ndarray:
    """Samples at `from_rate` -> float32 [N] in [-1, 1] at `to_rate`, mixed to mono.

    audio: [N] or with channels on `channel_axis` (-1: [N, channels], soundfile's layout; 0:
    [channels, N], librosa's); float on the [-1, 1] scale, or signed integer PCM (scaled by its
    type's range). Raises ValueError naming `what` for no samples, NaN or infinite ones, or a
    shape or type that is not audio.
    """
    audio = np.asarray(audio)
    if audio.ndim not in (1, 2):
        raise ValueError(f"{what} has shape {audio.shape}: pass samples [N] or [N, channels].")
    if audio.ndim == 2 and audio.shape[channel_axis] > MAX_CHANNELS:
        raise ValueError(f"{what} has shape {audio.shape}: {audio.shape[channel_axis]} channels? "
                         "Pass [N, channels] (transpose a [channels, N] array).")
    if audio.size == 0:
        raise ValueError(f"{what} holds no audio samples.")
    if np.issubdtype(audio.dtype, np.signedinteger):
        audio = audio / float(-np.iinfo(audio.dtype).min)
    elif not np.issubdtype(audio.dtype, np.floating):
        raise ValueError(f"{what} has samples of type {audio.dtype}: pass floats in [-1, 1] or "
                         "signed integer PCM.")
    bad = int(np.size(audio) - np.count_nonzero(np.isfinite(audio)))
    if bad:
        raise ValueError(f"{what}: {bad} of its {audio.size} samples are not finite (NaN or "
                         "infinity); re-export the file from its source.")
    if audio.ndim == 2:
        audio = audio.mean(axis=channel_axis)
    audio = audio.astype(np.float32)
    if from_rate != to_rate:
        import librosa
        audio = librosa.resample(audio, orig_sr=from_rate, target_sr=to_rate)
    return audio.astype(np.float32)


SILENT_DBFS = -60.0  # a peak below this is heard as silence


def verdict_warning(audio: np.ndarray, sample_rate: int, crop_samples: int) -> str | None:
    """Why a model's verdict on `audio` (float32 [N]) means little, or None: the file is
    silent (peak below SILENT_DBFS) or shorter than the model's crop of `crop_samples`, so the
    model hears mostly zero padding."""
    peak = float(np.abs(audio).max()) if audio.size else 0.0
    if peak < 10 ** (SILENT_DBFS / 20):
        level = f"{20 * np.log10(peak):.0f} dBFS" if peak > 0 else "all zeros"
        return (f"silent (peak {level}): the genres are the model's guess for silence, not a "
                "judgement of music")
    if len(audio) < crop_samples:
        return (f"{len(audio) / sample_rate:.2f} s long, shorter than the model's "
                f"{crop_samples / sample_rate:g} s crop: the model hears mostly zero padding")
    return None



def file_stem(name: str) -> str:
    """`name` (a genre such as 'Old-Time / Historic', an uploaded file's stem) made safe as
    part of a file name: path separators and characters shells and headers choke on become
    '-' or '_'."""
    name = name.replace("/", "-").replace("\\", "-")
    return "".join(c if c.isalnum() or c in "-_.+" else "_" for c in name).strip("._") or "audio"


def peak_safe(audio: np.ndarray) -> tuple[np.ndarray, float]:
    """(audio scaled down to peak at `PEAK` where it would clip as 16-bit PCM, the gain applied
    in dB: 0.0 where nothing was changed). Never scaled up; never clipped."""
    peak = float(np.abs(audio).max()) if audio.size else 0.0
    if peak <= PEAK:
        return audio, 0.0
    return (audio * (PEAK / peak)).astype(np.float32), float(20.0 * np.log10(PEAK / peak))
