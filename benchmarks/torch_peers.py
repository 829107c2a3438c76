"""The PyTorch side of `benchmarks/vs_pytorch.py`, written as a PyTorch user would write it.

Train step: torchvision's MobileNetV2 / ResNet-18 with a 1-channel first convolution, Adam,
cross-entropy, eager or `torch.compile`, contiguous or channels_last. Frontend: `torch.stft` +
librosa's mel matrix + librosa's `power_to_db(ref=np.max, top_db=80)` steps (or torchaudio's
MelSpectrogram for the power mel). Input: a `Dataset` over extracted FMA MP3 files, each item
decoded with librosa, randomly cropped and turned into a log-mel, for a `DataLoader`.

Imports torch, torchvision and librosa only (no JAX, no TensorFlow).
"""
import os
import zipfile

import librosa
import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
import torchvision
from torch import nn

_AMIN = 1e-10  # librosa's floor before log10

# (compile, channels_last) -> the setting's name in tables and JSON.
SETTINGS = {(False, False): "eager", (False, True): "eager+channels_last",
            (True, False): "compile", (True, True): "compile+channels_last"}


# ------------------------------------------------------------------------------- train step
def one_channel_model(name: str, num_classes: int = 8) -> nn.Module:
    """`torchvision.models.<name>(weights=None)` whose first conv takes 1 channel (same config)."""
    model = getattr(torchvision.models, name)(weights=None, num_classes=num_classes)
    conv_name, conv = next((n, m) for n, m in model.named_modules() if isinstance(m, nn.Conv2d))
    parent_name, _, attr = conv_name.rpartition(".")
    parent = model.get_submodule(parent_name) if parent_name else model
    setattr(parent, attr, nn.Conv2d(1, conv.out_channels, conv.kernel_size, conv.stride,
                                    conv.padding, conv.dilation, conv.groups,
                                    conv.bias is not None, conv.padding_mode))
    return model


def num_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def torch_step(name: str, batch: int, shape_nchw: tuple, compiled: bool, channels_last: bool):
    """One training step (forward, cross-entropy, backward, Adam 1e-3) as a callable, float32,
    train mode, on a fixed random batch; and the model's trainable parameter count."""
    torch.manual_seed(0)
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    model = one_channel_model(name).train().to(memory_format=fmt)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    forward = torch.compile(model) if compiled else model
    x = torch.randn(batch, *shape_nchw).contiguous(memory_format=fmt)
    y = torch.zeros(batch, dtype=torch.long)

    def run():
        opt.zero_grad(set_to_none=True)
        loss = F.cross_entropy(forward(x), y)
        loss.backward()
        opt.step()
        loss.item()
    return run, num_params(model)


# ---------------------------------------------------------------------------------- frontend
def power_to_db(mel: torch.Tensor, top_db: float | None = 80.0) -> torch.Tensor:
    """librosa's `power_to_db(S, ref=np.max, amin=1e-10, top_db)` per clip: [..., F, T]."""
    db = 10.0 * torch.log10(torch.clamp(mel, min=_AMIN))
    db = db - db.amax(dim=(-2, -1), keepdim=True)  # ref: the clip's loudest bin (>= amin)
    return db if top_db is None else torch.clamp(db, min=-top_db)


class TorchLogMel:
    """Log-mel in dB, [B, N] float waveform -> [B, n_mels, 1 + N // hop]: `torch.stft`
    (centered, zero padded as librosa >= 0.10, periodic Hann), |X|^2, librosa's Slaney mel
    matrix, then `power_to_db`. With `torchaudio=True` the power mel comes from
    `torchaudio.transforms.MelSpectrogram` (Slaney scale and norm) instead."""

    def __init__(self, sample_rate=22050, n_fft=2048, hop_length=512, n_mels=128, fmin=0.0,
                 fmax=None, top_db=80.0, torchaudio=False):
        self.n_fft, self.hop_length, self.top_db = n_fft, hop_length, top_db
        self.window = torch.hann_window(n_fft)  # periodic, as librosa's
        self.mel = torch.from_numpy(librosa.filters.mel(sr=sample_rate, n_fft=n_fft, n_mels=n_mels,
                                                        fmin=fmin, fmax=fmax))  # [n_mels, F]
        self.torchaudio = None
        if torchaudio:
            import torchaudio as ta
            self.torchaudio = ta.transforms.MelSpectrogram(
                sample_rate=sample_rate, n_fft=n_fft, hop_length=hop_length, f_min=fmin,
                f_max=fmax, n_mels=n_mels, power=2.0, center=True, pad_mode="constant",
                norm="slaney", mel_scale="slaney")

    def __call__(self, audio: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            if self.torchaudio is not None:
                return power_to_db(self.torchaudio(audio), self.top_db)
            spec = torch.stft(audio, self.n_fft, self.hop_length, window=self.window, center=True,
                              pad_mode="constant", return_complex=True)
            return power_to_db(self.mel @ (spec.real ** 2 + spec.imag ** 2), self.top_db)


# ------------------------------------------------------------------------------------- input
def extract_release(release_dir: str, out_dir: str, subset: str = "small") -> str:
    """Extracts `fma_metadata.zip` and `fma_<subset>.zip` into `out_dir` once (as a PyTorch user
    would have the MP3s on disk); returns `out_dir`."""
    done = os.path.join(out_dir, ".extracted")
    if not os.path.exists(done):
        for name in ("fma_metadata", f"fma_{subset}"):
            with zipfile.ZipFile(os.path.join(release_dir, name + ".zip")) as z:
                z.extractall(out_dir)
        open(done, "w").close()
    return out_dir


def fma_split(root: str, split: str = "training", subset: str = "small"
              ) -> tuple[list[str], list[int], list[str]]:
    """(MP3 paths, labels, genre names) of a split, from FMA's tracks.csv (the FMA way)."""
    tracks = pd.read_csv(os.path.join(root, "fma_metadata", "tracks.csv"), index_col=0,
                         header=[0, 1])
    rows = tracks[(tracks[("set", "split")] == split) & (tracks[("set", "subset")] == subset)
                  & tracks[("track", "genre_top")].notna()]
    genres = sorted(rows[("track", "genre_top")].unique())
    paths = [os.path.join(root, f"fma_{subset}", f"{t:06d}"[:3], f"{t:06d}.mp3") for t in rows.index]
    labels = [genres.index(g) for g in rows[("track", "genre_top")]]
    return paths, labels, genres


class Mp3LogMels(torch.utils.data.Dataset):
    """Item i: (log-mel [n_mels, T] of a random `crop_samples` crop of MP3 i, label)."""

    def __init__(self, paths, labels, sample_rate, crop_samples, log_mel: TorchLogMel):
        self.paths, self.labels = paths, labels
        self.sample_rate, self.crop_samples, self.log_mel = sample_rate, crop_samples, log_mel

    def __len__(self):
        return len(self.paths)

    def __getitem__(self, i):
        y, _ = librosa.load(self.paths[i], sr=self.sample_rate, mono=True)
        if len(y) < self.crop_samples:
            y = np.pad(y, (0, self.crop_samples - len(y)))
        start = int(torch.randint(len(y) - self.crop_samples + 1, ()))
        crop = torch.from_numpy(np.ascontiguousarray(y[start:start + self.crop_samples]))
        return self.log_mel(crop[None])[0], self.labels[i]
