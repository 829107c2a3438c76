"""Each genre's mean long-term average spectrum over a split's clips: the statistics the eq
baseline and the StarGAN's eq prior move a clip toward (`audio.ltas`)."""
import jax
import numpy as np

from jaxgenre.audio import frontend, ltas
from jaxgenre.data import input_pipeline

# Training clips per genre behind the eq baseline's curves (`evaluate_transfer
# --eq_clips_per_genre`'s default) and the StarGAN's eq prior's, so the two start alike.
CLIPS_PER_GENRE = 32


def genre_ltas(builder, split: str, mel: frontend.MelConfig, per_genre: int) -> np.ndarray:
    """Each genre's mean LTAS over up to `per_genre` whole clips of `split` (the first ones, the
    same on every process): float32 [C, n_mels] in dB relative to `mel.ref`."""
    num_classes = builder.info.features["label"].num_classes
    clips = input_pipeline.clips_by_label(builder, split, per_genre)
    missing = [builder.info.features["label"].names[c] for c in range(num_classes) if c not in clips]
    if missing:
        raise ValueError(f"The {split} split has no clip of {missing}: a genre's mean spectrum "
                         "needs at least one.")
    analyse = jax.jit(lambda x: ltas.ltas_db(frontend.log_mel(x, mel)))  # on this host only
    means = []
    for c in range(num_classes):
        audio = clips[c]["audio"]
        spectra = np.concatenate([analyse(audio[i:i + 8]) for i in range(0, len(audio), 8)])
        means.append(spectra.mean(axis=0))
    return np.stack(means).astype(np.float32)
