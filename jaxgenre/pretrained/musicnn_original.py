"""The ORIGINAL musicnn: the wheel's own TensorFlow 1 graph and weights, and its input.

The reference our port (`models.musicnn`) is tested against and the "frozen features" baseline
(`python -m jaxgenre.baselines --features musicnn`) is computed with. Needs TensorFlow, which
the package already depends on for its data pipeline; nothing here is used for training.
"""
import os
import tempfile

import librosa
import numpy as np

from jaxgenre.pretrained import import_dir, musicnn_wheel

# models.py built the graph under tf.name_scope('model'); names read from the .meta.
# Placeholder_1 is the training labels, Placeholder_2 is_training.
INPUT, IS_TRAINING = "model/Placeholder:0", "model/Placeholder_2:0"
PROBABILITIES, LOGITS = "model/Sigmoid:0", "model/dense_1/BiasAdd:0"
PENULTIMATE = "model/batch_normalization_10/batchnorm/add_1:0"  # models.py's bn_dense
SAMPLE_RATE, N_FFT, HOP, N_MELS = 16000, 512, 256, 96  # its configuration.py
PATCH_FRAMES = 187  # its 3 s training patches


def patches(audio: np.ndarray) -> np.ndarray:
    """musicnn's extractor.py input of a 16 kHz mono float waveform [N]: librosa's mel power,
    rounded to float16 as it does, log10(10000 x + 1), cut into non-overlapping patches of
    187 frames (its default; a last partial patch is dropped): float32 [P, 187, 96], P >= 1.
    Audio shorter than one patch is padded with silence (0 after the log) to one."""
    mel = librosa.feature.melspectrogram(y=audio, sr=SAMPLE_RATE, hop_length=HOP, n_fft=N_FFT,
                                         n_mels=N_MELS).T.astype(np.float16)
    rep = np.log10(10000 * mel.astype(np.float32) + 1)
    rep = np.pad(rep, ((0, max(PATCH_FRAMES - len(rep), 0)), (0, 0)))
    count = len(rep) // PATCH_FRAMES
    return rep[:count * PATCH_FRAMES].reshape(count, PATCH_FRAMES, N_MELS)


class OriginalMusicnn:
    """The wheel's graph of `variant` in inference mode, restored in a `tf.compat.v1.Session`.

    The .meta (TensorFlow 1.12) records output shapes of training-gradient nodes that today's
    shape inference disagrees with, so they are dropped (inference does not need them); the
    input is remapped to a placeholder of any length (the graph's is 187 frames).
    """

    def __init__(self, wheel: str, variant: str = "MSD_musicnn"):
        import tensorflow as tf
        from tensorflow.core.protobuf import meta_graph_pb2
        if variant not in musicnn_wheel.VARIANTS:
            raise import_dir.ImportWeightsError(
                f"Unknown variant {variant!r}; valid: {', '.join(musicnn_wheel.VARIANTS)}.")
        read = musicnn_wheel.wheel_reader(wheel)
        meta = meta_graph_pb2.MetaGraphDef.FromString(read(f"musicnn/{variant}/.meta"))
        for node in meta.graph_def.node:
            node.attr.pop("_output_shapes", None)
        self._graph = tf.Graph()
        with self._graph.as_default(), tempfile.TemporaryDirectory() as tmp:
            self._input = tf.compat.v1.placeholder(tf.float32, [None, None, N_MELS])
            saver = tf.compat.v1.train.import_meta_graph(meta, input_map={INPUT: self._input})
            self.session = tf.compat.v1.Session(graph=self._graph)
            prefix = os.path.join(tmp, "ckpt")
            for suffix in (".index", ".data-00000-of-00001"):
                with open(prefix + suffix, "wb") as f:
                    f.write(read(f"musicnn/{variant}/{suffix}"))
            saver.restore(self.session, prefix)

    def __call__(self, x: np.ndarray) -> dict[str, np.ndarray]:
        """x: float32 [B, T, 96] log-mel patches -> {'probabilities', 'logits': [B, 50],
        'penultimate': [B, 200]} float32."""
        names = {"probabilities": PROBABILITIES, "logits": LOGITS, "penultimate": PENULTIMATE}
        values = self.session.run(list(names.values()), {self._input: x, IS_TRAINING: False})
        return dict(zip(names, values))

    def close(self) -> None:
        self.session.close()
