"""Model registry: a config names a model, nobody edits the trainer to add one.

Every model is an `nnx.Module` built as `cls(num_classes, *, dtype, rngs, **kwargs)`. Genre
classifiers are called as `model(x, train=bool, rngs=nnx.Rngs | None)` -> logits
[B, num_classes] float32. Their class attribute `input_kind` says what they eat: 'log_mel'
[B, T, n_mels, 1], 'mfcc' [B, T, n_mfcc, 1] or 'waveform' [B, N]. Every classifier ends in an
`nnx.Linear` named `dense`, whose input is its penultimate features (`logits_and_features`).
The style-transfer models (generator, discriminator, latent classifier) have their own calls,
documented in `models.stargan`.
"""
import jax
import jax.numpy as jnp
import ml_collections
from flax import nnx

from jaxgenre.models import cnn1d, crnn, mfcc_cnn, mobilenet, musicnn, resnet, stargan

HEAD = "dense"  # every classifier's last layer: what fine-tuning re-initialises or not

_REGISTRY = {
    "mobilenet_v2": mobilenet.MobileNetV2,
    "resnet18": resnet.ResNet18,
    "resnet34": resnet.ResNet34,
    "resnet50": resnet.ResNet50,
    "cnn1d": cnn1d.Cnn1D,
    "sample_cnn": cnn1d.SampleCNN,
    "mfcc_cnn": mfcc_cnn.MfccCNN,
    "crnn": crnn.CRNN,
    "musicnn": musicnn.Musicnn,
}
NAMES = tuple(sorted(_REGISTRY))  # the genre classifiers
# Style transfer (`jaxgenre.tasks.gan`): the same constructor, their own calls (see models.stargan).
_REGISTRY.update({
    "stargan_generator": stargan.Generator,
    "stargan_discriminator": stargan.Discriminator,
    "latent_classifier": stargan.LatentClassifier,
})


DTYPES = {"float32": jnp.float32, "bfloat16": jnp.bfloat16}


def create(section: ml_collections.ConfigDict, num_classes: int, rngs: nnx.Rngs,
           trainer_keys: tuple[str, ...] = (), **extra) -> nnx.Module:
    """The model a config section names (`config.model`, `config.discriminator`): the class
    registered as its `name`, its `dtype` ('float32' default, or 'bfloat16') for the
    computation, every other key of the section but `trainer_keys` (read by the trainer, not
    the model) as a constructor keyword, and `extra` ones."""
    dtype = section.get("dtype", "float32")
    if dtype not in DTYPES:
        raise ValueError(f"Unknown model.dtype {dtype!r}; valid: {', '.join(DTYPES)}.")
    kwargs = {k: v for k, v in section.items() if k not in ("name", "dtype", *trainer_keys)}
    return get(section.name)(num_classes, dtype=DTYPES[dtype], rngs=rngs, **kwargs, **extra)


def get(name: str) -> type[nnx.Module]:
    """The model class registered as `name`; a clear error listing valid names otherwise."""
    if name not in _REGISTRY:
        raise ValueError(f"Unknown model.name {name!r}; registered models: "
                         f"{', '.join(sorted(_REGISTRY))}.")
    return _REGISTRY[name]


def split(model: nnx.Module) -> tuple[nnx.GraphDef, nnx.State, nnx.State]:
    """(graphdef, params, rest): trained `nnx.Param`s apart from every other variable
    (BatchNorm statistics, spectral-norm vectors). The one filter every task and reader uses,
    so what a step returns as `rest` always has the structure the state was created with."""
    return nnx.split(model, nnx.Param, ...)


def rest(model: nnx.Module) -> nnx.State:
    """The non-`nnx.Param` variables of `model`, as `split` returns them (after a forward pass
    that updated them)."""
    return split(model)[2]


def logits_and_features(model: nnx.Module, x: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Inference: (logits [B, num_classes] float32, penultimate features [B, D] float32).

    The features are what the final `dense` layer receives (after pooling, before dropout at
    training time): the embedding a genre judge's Frechet distance is computed on.
    """
    dense = model.dense
    tap = _Tap(dense)
    model.dense = tap
    try:
        logits = model(x, train=False)
    finally:
        model.dense = dense
    return logits, tap.inputs[0].astype(jnp.float32)


class _Tap:
    """Stands in for a layer: records what it is called with, forwards everything else."""

    def __init__(self, layer):
        self.layer, self.inputs = layer, []

    def __call__(self, h):
        self.inputs.append(h)
        return self.layer(h)

    def __getattr__(self, name):
        return getattr(self.layer, name)
