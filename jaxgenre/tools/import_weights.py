r"""Imports published weights into our models: musicnn (Pons & Serra 2019) from its pip wheel,
and Keras's ImageNet MobileNetV2 and ResNet50 (`jaxgenre.pretrained.keras_weights`).

  python -m jaxgenre.import_weights musicnn --wheel musicnn-0.1.0-py3-none-any.whl \
      --variant MSD_musicnn --out DIR
  python -m jaxgenre.import_weights mobilenet_v2 --out DIR \
      --weights ~/.keras/models/mobilenet_v2_weights_tf_dim_ordering_tf_kernels_1.0_224_no_top.h5
  python -m jaxgenre.import_weights resnet50 --out DIR \
      --weights ~/.keras/models/resnet50_weights_tf_dim_ordering_tf_kernels_notop.h5

Keras: --weights is a file `tf.keras.applications` cached (or any file Keras's load_weights
reads for that network); MobileNetV2's --alpha comes from the cache file's name unless given.
The first convolution is summed over RGB for our one-channel log-mel input.

musicnn: --wheel: the wheel (`pip download --no-deps musicnn==0.1.0`) or the directory it was unzipped
into. --variant: MSD_musicnn (Million Song Dataset tags) or MTT_musicnn (MagnaTagATune tags),
50 tags each. Every TensorFlow variable of the checkpoint but the optimizer's goes to exactly one
`models.musicnn.Musicnn` variable of the same shape, else the import stops naming it.

DIR gets `state/`, an Orbax checkpoint of the model's `nnx.State` (parameters and BatchNorm
statistics) as a pure dict, and `import.json`: variant, tags (the wheel's configuration.py),
model name and kwargs, the frontend as `frontend.MelConfig` fields (musicnn's input is librosa's
power mel spectrogram, Slaney filters, compressed as log10(10000 x + 1); it was trained on
3 s patches). `import_dir.load_model(DIR)` gives (model, info); tag probabilities are
sigmoid(logits).
"""
from jaxgenre.core import cli

# First of all: before TensorFlow and JAX start their threads and loggers.
cli.prepare_process(relaunch=__name__ == "__main__")

import ast
import os
import re
import sys
import tempfile
import zipfile

import jax
import numpy as np
from absl import app, flags
from flax import nnx

from jaxgenre.pretrained import import_dir, keras_weights
from jaxgenre.pretrained.import_dir import ImportWeightsError

VARIANTS = {"MSD_musicnn": "MSD_LABELS", "MTT_musicnn": "MTT_LABELS"}  # -> their tag list
_PIP = "pip download --no-deps musicnn==0.1.0"
_CHECKPOINT_FILES = (".index", ".data-00000-of-00001")  # the wheel's prefix is the directory
# models.py's define_model gives both variants these; the rest are build_musicnn's defaults.
_MODEL_KWARGS = {"num_filt_frontend": 1.6, "num_filt_midend": 64, "num_units_backend": 200,
                 "dropout": 0.5}
_LOG_GAIN = 10000.0  # extractor.py: log10(10000 x + 1)

# Our variable path -> TensorFlow layer. tf.compat.v1.layers numbers unnamed layers of a kind in
# the order models.py creates them.
_LAYERS = (
    ("input_bn", "batch_normalization"),
    ("timbral/0/conv", "conv2d"), ("timbral/0/bn", "batch_normalization_1"),
    ("timbral/1/conv", "conv2d_1"), ("timbral/1/bn", "batch_normalization_2"),
    ("temporal/0/conv", "conv2d_2"), ("temporal/0/bn", "batch_normalization_3"),
    ("temporal/1/conv", "conv2d_3"), ("temporal/1/bn", "batch_normalization_4"),
    ("temporal/2/conv", "conv2d_4"), ("temporal/2/bn", "batch_normalization_5"),
    ("midend/0/conv", "conv2d_5"), ("midend/0/bn", "batch_normalization_6"),
    ("midend/1/conv", "conv2d_6"), ("midend/1/bn", "batch_normalization_7"),
    ("midend/2/conv", "conv2d_7"), ("midend/2/bn", "batch_normalization_8"),
    ("pool_bn", "batch_normalization_9"),
    ("hidden", "dense"), ("hidden_bn", "batch_normalization_10"),
    ("dense", "dense_1"),
)
_BN_VARIABLES = {"scale": "gamma", "bias": "beta", "mean": "moving_mean",
                 "var": "moving_variance"}
_WEIGHT_VARIABLES = {"kernel": "kernel", "bias": "bias"}
_OPTIMIZER = re.compile(r"(/Adam(_1)?|^beta[12]_power)$")  # Adam's slots: not the model


def import_musicnn(wheel: str, variant: str, out: str) -> dict:
    """Writes `variant`'s weights from the musicnn wheel (file or unzipped directory) to `out`
    (see the module docstring); returns the info written to import.json."""
    if variant not in VARIANTS:
        raise ImportWeightsError(f"Unknown variant {variant!r}; valid: {', '.join(VARIANTS)}.")
    import_dir.check_new(out)
    config, variables = read_wheel(wheel, variant)
    info = {
        "source": f"musicnn 0.1.0 {variant}", "variant": variant, "model": "musicnn",
        "model_kwargs": {"n_mels": config["N_MELS"], **_MODEL_KWARGS},
        "tags": config[VARIANTS[variant]],
        "frontend": {"sample_rate": config["SR"], "n_fft": config["FFT_SIZE"],
                     "hop_length": config["FFT_HOP"], "n_mels": config["N_MELS"],
                     "compress": "log10_1p", "log_gain": _LOG_GAIN},
    }
    model = nnx.eval_shape(lambda: import_dir.build_model(info))  # shapes are all we need
    import_dir.save(out, convert(variables, model), info)
    return info


def read_wheel(wheel: str, variant: str) -> tuple[dict, dict[str, np.ndarray]]:
    """(configuration.py's constants, {TensorFlow variable: value}) of `variant` in the musicnn
    wheel: a .whl file or the directory it was unzipped into."""
    read = wheel_reader(wheel)
    try:
        config = _constants(read("musicnn/configuration.py").decode())
    except FileNotFoundError:
        raise ImportWeightsError(f"{wheel} is not the musicnn wheel nor the directory it was "
                                 "unzipped into (the one holding musicnn/): it has no "
                                 f"musicnn/configuration.py. Get the wheel with `{_PIP}`."
                                 ) from None
    with tempfile.TemporaryDirectory() as tmp:
        prefix = os.path.join(tmp, variant)
        for suffix in _CHECKPOINT_FILES:
            try:
                data = read(f"musicnn/{variant}/{suffix}")
            except FileNotFoundError:
                raise ImportWeightsError(f"{wheel} has no musicnn/{variant}/{suffix}: an "
                                         f"incomplete musicnn wheel; get it again with `{_PIP}`."
                                         ) from None
            with open(prefix + suffix, "wb") as f:
                f.write(data)
        import tensorflow as tf  # only to read the checkpoint: `load` does without it
        reader = tf.train.load_checkpoint(prefix)
        variables = {name: reader.get_tensor(name) for name in reader.get_variable_to_shape_map()}
    return config, variables


def convert(variables: dict[str, np.ndarray], model: nnx.Module) -> dict:
    """musicnn's TensorFlow variables -> the pure dict of `model`'s state, following `_LAYERS`.
    Every non-optimizer variable must fill exactly one of ours, of the same shape."""
    ours, treedef = jax.tree_util.tree_flatten_with_path(nnx.to_pure_dict(nnx.state(model)))
    paths = [import_dir.path_name(p) for p, _ in ours]
    source = {}  # our path -> TensorFlow variable
    for layer, tf_layer in _LAYERS:
        names = _BN_VARIABLES if tf_layer.startswith("batch_normalization") else _WEIGHT_VARIABLES
        source.update({f"{layer}/{leaf}": f"{tf_layer}/{tf_leaf}" for leaf, tf_leaf in names.items()})
    problems = [f"our {p} has no TensorFlow variable in _LAYERS" for p in paths if p not in source]
    problems += [f"the checkpoint has no {name} (for our {p})" for p, name in source.items()
                 if name not in variables]
    unused = sorted(set(variables) - set(source.values()))
    problems += [f"the checkpoint's {name} {list(variables[name].shape)} has no place in ours"
                 for name in unused if not _OPTIMIZER.search(name)]
    leaves = []
    for path, (_, leaf) in zip(paths, ours):
        value = variables.get(source.get(path))
        if value is None:
            continue
        if path.startswith("midend/") and path.endswith("kernel") and value.shape[2:3] == (1,):
            value = value[:, :, 0]  # TF's [7, C, 1, F] image kernel is our [7, C, F] 1-D one
        if value.shape != leaf.shape:
            problems.append(f"the checkpoint's {source[path]} {list(variables[source[path]].shape)}"
                            f" does not fit our {path} {list(leaf.shape)}")
        leaves.append(np.asarray(value, np.float32))
    if problems:
        raise ImportWeightsError(
            "The checkpoint does not fit the model: " + "; ".join(problems) + ". Import one of "
            f"{', '.join(VARIANTS)} from the musicnn wheel into Musicnn({_MODEL_KWARGS}).")
    return jax.tree_util.tree_unflatten(treedef, leaves)


def wheel_reader(wheel: str):
    """A function reading a file of the wheel by its path inside it; FileNotFoundError if absent."""
    if os.path.isdir(wheel):
        def read(name):
            with open(os.path.join(wheel, name), "rb") as f:
                return f.read()
        return read
    if not os.path.exists(wheel):
        raise ImportWeightsError(f"--wheel {wheel}: no such file or directory. Download the "
                                 f"wheel with `{_PIP} -d DIR` and pass the .whl file (or the "
                                 "directory it was unzipped into).")
    if not zipfile.is_zipfile(wheel):
        raise ImportWeightsError(f"{wheel} is not a wheel (zip file) nor a directory; get the "
                                 f"musicnn wheel with `{_PIP}`.")

    def read(name):
        with zipfile.ZipFile(wheel) as z:
            try:
                return z.read(name)
            except KeyError:
                raise FileNotFoundError(name) from None
    return read


def _constants(source: str) -> dict:
    """The literal module-level assignments of a Python file (configuration.py), unexecuted."""
    return {node.targets[0].id: ast.literal_eval(node.value) for node in ast.parse(source).body
            if isinstance(node, ast.Assign) and isinstance(node.targets[0], ast.Name)}


def import_keras(arch: str, weights: str, out: str, alpha: float | None = None,
                 in_channels: int = 1) -> dict:
    """Writes Keras's `arch` weights from the file `weights` to `out` (the model docstring of
    `jaxgenre.pretrained.keras_weights`); returns the info written to import.json."""
    import_dir.check_new(out)
    kwargs = {"in_channels": in_channels, **keras_weights.MODEL_KWARGS.get(arch, {})}
    if arch == "mobilenet_v2":
        alpha = alpha or keras_weights.alpha_from_name(weights) or 1.0
        kwargs["width"] = alpha
    keras_model = keras_weights.load_keras(arch, weights, alpha or 1.0)
    has_top = any(layer.name == "predictions" for layer in keras_model.layers)
    info = {"source": f"Keras ImageNet {arch} ({os.path.basename(weights)})", "model": arch,
            "model_kwargs": kwargs, "num_classes": 1000 if has_top else None}
    target = nnx.to_pure_dict(nnx.state(nnx.eval_shape(lambda: import_dir.build_model(info))))
    if not has_top:
        del target["dense"]
    import_dir.save(out, keras_weights.convert(keras_model, arch, target), info)
    return info


def define_flags() -> None:
    """The command line's flags, in absl's global FLAGS. Only the command line defines them:
    other entry points imported beside this module define --out too."""
    flags.DEFINE_string("wheel", None, "musicnn: the wheel (.whl) or the directory it was "
                        "unzipped into.")
    flags.DEFINE_string("variant", "MSD_musicnn", f"musicnn: one of {', '.join(VARIANTS)}.")
    flags.DEFINE_string("weights", None, "mobilenet_v2, resnet50: Keras's weights file (.h5).")
    flags.DEFINE_float("alpha", None, "mobilenet_v2: the width (0.35 to 1.4); default: from "
                       "the Keras file name, else 1.0.")
    flags.DEFINE_string("out", None, "A new directory for the checkpoint and import.json.",
                        required=True)


_SOURCES = ("musicnn", *keras_weights.MODEL_KWARGS)


def main(argv):
    """argv: the program, then the model to import (one of `_SOURCES`)."""
    cli.quiet_logs()
    if len(argv) != 2 or argv[1] not in _SOURCES:
        raise app.UsageError(f"Pass the model to import: one of {', '.join(_SOURCES)} "
                             f"(got {argv[1:]}).")
    f, source = flags.FLAGS, argv[1]
    needed = "wheel" if source == "musicnn" else "weights"
    if f[needed].value is None:
        raise app.UsageError(f"{source} needs --{needed}.")
    try:
        if source == "musicnn":
            info = import_musicnn(f.wheel, f.variant, f.out)
            print(f"Imported musicnn {info['variant']} ({len(info['tags'])} tags) to {f.out}.")
        else:
            info = import_keras(source, f.weights, f.out, f.alpha)
            head = "with" if info["num_classes"] else "without"
            print(f"Imported {info['source']} {head} its ImageNet head to {f.out}.")
    except (ImportWeightsError, OSError) as e:
        sys.exit(f"error: {e}")


def entry_point() -> None:
    """Parses the flags and runs `main` (the `python -m` entry point)."""
    define_flags()
    app.run(main)


if __name__ == "__main__":
    entry_point()
