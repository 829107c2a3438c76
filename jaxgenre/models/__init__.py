"""Model registry: a config names a model, nobody edits the trainer to add one.

Every model is an `nnx.Module` built as `cls(num_classes, *, dtype, rngs, **kwargs)` and called as
`model(x, train=bool, rngs=nnx.Rngs | None)` -> logits [B, num_classes] float32. Its class
attribute `input_kind` says what it eats: 'log_mel' [B, T, n_mels, 1], 'mfcc'
[B, T, n_mfcc, 1] or 'waveform' [B, N].
"""
from flax import nnx

from jaxgenre.models import cnn1d, crnn, mfcc_cnn, mobilenet, resnet

_REGISTRY = {
    "mobilenet_v2": mobilenet.MobileNetV2,
    "resnet18": resnet.ResNet18,
    "resnet34": resnet.ResNet34,
    "resnet50": resnet.ResNet50,
    "cnn1d": cnn1d.Cnn1D,
    "sample_cnn": cnn1d.SampleCNN,
    "mfcc_cnn": mfcc_cnn.MfccCNN,
    "crnn": crnn.CRNN,
}
NAMES = tuple(sorted(_REGISTRY))


def get(name: str) -> type[nnx.Module]:
    """The model class registered as `name`; a clear error listing valid names otherwise."""
    if name not in _REGISTRY:
        raise ValueError(f"Unknown model.name {name!r}; registered models: {', '.join(NAMES)}.")
    return _REGISTRY[name]
