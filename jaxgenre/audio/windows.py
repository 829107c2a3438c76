"""Audio of any length in fixed windows, every half window: where they start for a classifier
that averages them (`covering_starts`), and the cut and the sin^2 cross-fade that joins the
windows' converted frames onto the whole signal's frame grid without seams (`crossfade_cut`,
`crossfade_join_frames`)."""
import numpy as np


def covering_starts(num_samples: int, window: int) -> np.ndarray:
    """int64 [W]: where each window of `window` samples starts, every window // 2 samples, the
    last one ending at the file's end so that every sample is heard; [0] for a file no longer
    than a window."""
    if num_samples <= window:
        return np.zeros(1, np.int64)
    hop = max(window // 2, 1)
    return np.append(np.arange(0, num_samples - window, hop), num_samples - window)


def crossfade_cut(audio: np.ndarray, window: int) -> np.ndarray:
    """float32 [N] -> windows [W, window] every window // 2 samples (`window` even), over the
    audio with half a window of silence at each end (where the first and last fades are
    partial) and up to the next whole hop."""
    hop = window // 2
    total = max(len(audio) + 2 * hop, window)
    total += -(total - window) % hop
    padded = np.zeros(total, np.float32)
    padded[hop:hop + len(audio)] = audio
    return np.stack([padded[s:s + window] for s in range(0, total - window + 1, hop)])


def crossfade_join_frames(frames: np.ndarray, window: int, hop_length: int,
                          num_samples: int) -> np.ndarray:
    """The inverse of `crossfade_cut` on the frame grid: per-window frames [W, T, ...] of the windows
    `crossfade_cut(audio, window)` made (centred frames every `hop_length` samples, T = 1 +
    window // hop_length; `window` a multiple of 2 * hop_length, so every window's frames fall
    on one grid) -> the frames of the whole signal [1 + num_samples // hop_length, ...], each
    the sin^2-weighted mean of the windows' frames at its time (the weights sum to one)."""
    if window % (2 * hop_length):
        raise ValueError(f"window {window} is not a multiple of 2 x hop {hop_length}: the "
                         "windows' frames would fall between the signal's.")
    count, t = frames.shape[:2]
    step = window // 2 // hop_length  # frames between window starts, and before the audio
    fade = np.sin(np.pi * np.arange(t) * hop_length / window) ** 2
    fade = fade.reshape(t, *([1] * (frames.ndim - 2)))
    total = (count - 1) * step + t
    summed = np.zeros((total, *frames.shape[2:]), np.float64)
    weight = np.zeros((total, *([1] * (frames.ndim - 2))), np.float64)
    for i, f in enumerate(frames):
        summed[i * step:i * step + t] += fade * f
        weight[i * step:i * step + t] += fade
    keep = slice(step, step + 1 + num_samples // hop_length)
    if not (weight[keep] > 0).all():
        raise ValueError("The windows do not cover the signal: cut them with crossfade_cut.")
    return (summed[keep] / weight[keep]).astype(np.float32)
