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

import os

from absl import app, flags
from flax import nnx

from jaxgenre.pretrained import import_dir, keras_weights, musicnn_wheel


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
    flags.DEFINE_string("variant", "MSD_musicnn", f"musicnn: one of {', '.join(musicnn_wheel.VARIANTS)}.")
    flags.DEFINE_string("weights", None, "mobilenet_v2, resnet50: Keras's weights file (.h5).")
    cli.float_flag("alpha", None, "mobilenet_v2: the width (0.35 to 1.4); default: from the "
                   "Keras file name, else 1.0.", minimum=0.35, maximum=1.4)
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
    if source == "musicnn":
        info = musicnn_wheel.import_musicnn(f.wheel, f.variant, f.out)
        print(f"Imported musicnn {info['variant']} ({len(info['tags'])} tags) to {f.out}.")
    else:
        info = import_keras(source, f.weights, f.out, f.alpha)
        head = "with" if info["num_classes"] else "without"
        print(f"Imported {info['source']} {head} its ImageNet head to {f.out}.")


def entry_point() -> None:
    """Parses the flags and runs `main` (the `python -m` entry point)."""
    define_flags()
    cli.run(main)


if __name__ == "__main__":
    entry_point()
