"""musicnn (Pons & Serra 2019) from its pip wheel: the wheel read (a .whl or the directory it was
unzipped into), its TensorFlow checkpoint converted to `models.musicnn.Musicnn`'s state and
written as an import directory (`python -m jaxgenre.import_weights musicnn`). The original
model (`musicnn_original`) reads the same wheel through `wheel_reader`.
"""
import ast
import os
import re
import tempfile
import zipfile

import jax
import numpy as np
from flax import nnx

from jaxgenre.pretrained import import_dir
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
