"""Audio of any length in fixed windows, every half window: where they start for a classifier
that averages them (`covering_starts`), and the cut and sin^2 cross-fade that overlap-add
converted windows back into one signal without seams (`crossfade_cut`, `crossfade_join`)."""
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


def crossfade_join(windows: np.ndarray, num_samples: int) -> np.ndarray:
    """The inverse of `crossfade_cut` for windows [W, window] (converted one by one): each
    faded by sin^2, which sums to one at half overlap, and overlap-added -> float32 [num_samples]."""
    count, window = windows.shape
    hop = window // 2
    fade = np.sin(np.pi * (np.arange(window) + 0.5) / window) ** 2
    out = np.zeros((count - 1) * hop + window, np.float32)
    for i, y in enumerate(windows):
        out[i * hop:i * hop + window] += fade * y
    return out[hop:hop + num_samples]
