"""Keras's ImageNet weights (`tf.keras.applications` MobileNetV2 and ResNet50) in our models.

A weights file (the .h5 that `tf.keras.applications` caches in ~/.keras/models, with or without
its top, or any file `keras.Model.load_weights` reads for the same architecture) is loaded into
the Keras model with TensorFlow, then copied layer by layer, by Keras's layer names, into ours:

- 1x1 convolution kernels [1, 1, C_in, C_out] become our pointwise `Linear`s' [C_in, C_out];
  depthwise kernels [3, 3, C, 1] become [3, 3, 1, C];
- the first convolution goes from 3 input channels to `in_channels`: 1 sums the RGB kernels
  (a grey image replicated over RGB gives the same output), 3 keeps them;
- a convolution's bias (Keras's ResNet50 has them before every BatchNorm) folds into the
  BatchNorm's moving mean: BN(conv + b) with mean m is BN(conv) with mean m - b;
- the top (1000 ImageNet classes), when the file has it, becomes our `dense`.

Every Keras weight goes to exactly one of ours and every one of ours gets one, with the same
shape, else the import stops naming them. Our models then compute what Keras does (with Keras's
BatchNorm epsilon and, for ResNet50, its v1 layout: `MODEL_KWARGS`).
"""
import os
import re

import jax
import numpy as np

from jaxgenre.pretrained import import_dir
from jaxgenre.pretrained.import_dir import ImportWeightsError

# Our model's keyword arguments that make it Keras's network.
MODEL_KWARGS = {
    "mobilenet_v2": {"bn_epsilon": 1e-3},
    "resnet50": {"padding": "symmetric", "stride_in_1x1": True, "bn_epsilon": 1.001e-5},
}
_RESNET50_STAGES = (3, 4, 6, 3)
_ALPHA_IN_NAME = re.compile(r"_(\d\.\d+)_\d+(_no_top)?\.h5$")  # Keras's cache file names


def alpha_from_name(path: str) -> float | None:
    """MobileNetV2's alpha from a Keras cache file name
    (mobilenet_v2_weights_tf_dim_ordering_tf_kernels_0.35_224_no_top.h5 -> 0.35), else None."""
    match = _ALPHA_IN_NAME.search(os.path.basename(path))
    return float(match.group(1)) if match else None


def load_keras(arch: str, weights: str, alpha: float = 1.0):
    """The Keras model `arch` ('mobilenet_v2' or 'resnet50') holding the weights of the file
    `weights`, with its top (logits, no softmax) if the file has one."""
    if arch not in MODEL_KWARGS:
        raise ImportWeightsError(f"Unknown Keras architecture {arch!r}; valid: "
                                 f"{', '.join(MODEL_KWARGS)}.")
    if not os.path.isfile(weights):
        raise ImportWeightsError(f"--weights {weights}: no such file. Point it at the .h5 file "
                                 "`tf.keras.applications` caches in ~/.keras/models.")
    import h5py  # Keras's own reader of .h5 weights
    if not h5py.is_hdf5(weights):
        raise ImportWeightsError(f"--weights {weights} is not an HDF5 file (a partial download, "
                                 "or another format): point it at the .h5 file "
                                 "`tf.keras.applications` caches in ~/.keras/models.")
    errors = []
    for include_top in (False, True):  # Keras caches both; only the layer count tells them apart
        model = build_keras(arch, alpha, include_top)
        try:
            model.load_weights(weights)
            return model
        except ValueError as e:
            errors.append(f"{'with' if include_top else 'without'} its top: {str(e)[:200]}")
    width = f" with alpha {alpha} (pass --alpha)" if arch == "mobilenet_v2" else ""
    raise ImportWeightsError(f"{weights} does not load into Keras's {arch}{width}: "
                             + "; ".join(errors))


def build_keras(arch: str, alpha: float = 1.0, include_top: bool = True, classes: int = 1000,
                input_shape=(224, 224, 3)):
    """Keras's `arch` with random weights, logits out (no softmax)."""
    import tensorflow as tf  # only to read the weights: our models do without it

    kwargs = {"weights": None, "include_top": include_top, "classes": classes,
              "input_shape": input_shape, "classifier_activation": None}
    if arch == "mobilenet_v2":
        return tf.keras.applications.MobileNetV2(alpha=alpha, **kwargs)
    return tf.keras.applications.ResNet50(**kwargs)


def keras_layers(arch: str, num_blocks: int) -> list[tuple[str, str, str]]:
    """(our ConvBN path, Keras convolution layer, Keras BatchNorm layer), in network order."""
    if arch == "mobilenet_v2":
        layers = [("stem", "Conv1", "bn_Conv1")]
        for i in range(num_blocks):
            prefix = "expanded_conv_" if i == 0 else f"block_{i}_"
            # The first block (expansion 1) has no expand layer: `convert` skips what we lack.
            layers += [(f"blocks/{i}/{part}", prefix + part, f"{prefix}{part}_BN")
                       for part in ("expand", "depthwise", "project")]
        return layers + [("last", "Conv_1", "Conv_1_bn")]
    layers = [("stem", "conv1_conv", "conv1_bn")]
    i = 0
    for stage, repeats in enumerate(_RESNET50_STAGES, start=2):
        for block in range(1, repeats + 1):
            for ours, theirs in (("conv1", 1), ("conv2", 2), ("conv3", 3), ("shortcut", 0)):
                keras = f"conv{stage}_block{block}_{theirs}"
                layers.append((f"blocks/{i}/{ours}", f"{keras}_conv", f"{keras}_bn"))
            i += 1
    return layers


def convert(keras_model, arch: str, target: dict) -> dict:
    """Keras's weights as `target`'s pure dict (our model's `nnx.to_pure_dict(state)`, without
    `dense` when Keras's has no top; its shapes decide the in_channels adaptation)."""
    flat = import_dir.flatten(target)
    keras = {layer.name: layer for layer in keras_model.layers if layer.weights}
    num_blocks = len({p.split("/")[1] for p in flat if p.startswith("blocks/")})
    values, used, problems = {}, set(), []
    for ours, conv_name, bn_name in keras_layers(arch, num_blocks):
        if f"{ours}/conv/kernel" not in flat:
            if conv_name in keras:
                problems.append(f"Keras's {conv_name} has no place in ours (no {ours})")
            continue
        if conv_name not in keras or bn_name not in keras:
            problems.append(f"Keras has no {conv_name} / {bn_name} (for our {ours})")
            continue
        used |= {conv_name, bn_name}
        conv = keras[conv_name].get_weights()
        kernel = _kernel(conv[0], flat[f"{ours}/conv/kernel"].shape,
                         type(keras[conv_name]).__name__ == "DepthwiseConv2D")
        bias = conv[1] if len(conv) > 1 else 0.0
        gamma, beta, mean, var = keras[bn_name].get_weights()
        values.update({f"{ours}/conv/kernel": kernel, f"{ours}/bn/scale": gamma,
                       f"{ours}/bn/bias": beta, f"{ours}/bn/mean": mean - bias,
                       f"{ours}/bn/var": var})
    if "predictions" in keras:
        used.add("predictions")
        values["dense/kernel"], values["dense/bias"] = keras["predictions"].get_weights()
    problems += [f"Keras's {name} has no place in ours" for name in sorted(set(keras) - used)]
    for path, leaf in flat.items():
        if path not in values:
            problems.append(f"our {path} gets no Keras weight")
        elif np.shape(values[path]) != leaf.shape:
            problems.append(f"Keras's weight for our {path} is {list(np.shape(values[path]))}, "
                            f"ours {list(leaf.shape)}")
    problems += [f"Keras's weights for {path} have no place in ours"
                 for path in sorted(set(values) - set(flat))]
    if problems:
        raise ImportWeightsError(f"Keras's {arch} does not fit our model: " + "; ".join(problems))
    return jax.tree_util.tree_unflatten(jax.tree.structure(target),
                                        [np.asarray(values[path], np.float32) for path in flat])


def _kernel(value: np.ndarray, shape: tuple, depthwise: bool) -> np.ndarray:
    """A Keras convolution kernel in our layout `shape`."""
    if depthwise:
        return value.transpose(0, 1, 3, 2)  # [3, 3, C, 1] -> [3, 3, 1, C]
    if len(shape) == 2:
        return value.reshape(shape)  # a 1x1 convolution: our pointwise Linear
    if shape[2] == 1 and value.shape[2] == 3:
        return value.sum(axis=2, keepdims=True)  # RGB -> one channel
    return value
