"""Refuses bad configs before any work starts, with messages that name the fix."""
import importlib.util
import sys

import jax
import ml_collections
from absl import flags

from jaxgenre import gan_losses, models, tasks


def flatten(config: ml_collections.ConfigDict | dict, prefix: str = "") -> dict:
    """{'data.name': 'fma/small', 'optim.learning_rate': 0.001, ...}: every settable key."""
    out = {}
    for k, v in config.items():
        if isinstance(v, ml_collections.ConfigDict | dict):
            out.update(flatten(v, f"{prefix}{k}."))
        else:
            out[prefix + k] = v
    return out


def parse_flags(argv: list[str]) -> list[str]:
    """`app.run(main, flags_parser=parse_flags)`: a wrong --config.KEY lists the valid keys."""
    try:
        return flags.FLAGS(argv)
    except Exception:
        overrides = [a[len("--config."):].split("=", 1)[0] for a in argv[1:]
                     if a.startswith("--config.")]
        if not overrides:
            raise
        valid = list(flatten(_load_config_file(argv)))
        unknown = [k for k in overrides if k not in valid]
        if not unknown:
            raise
        sys.exit(f"error: unknown config key(s): {', '.join(unknown)}.\n"
                 f"Valid keys: {', '.join(sorted(valid))}")


def _load_config_file(argv: list[str]) -> ml_collections.ConfigDict:
    """The config named by --config=PATH[:ARG] (or --config PATH[:ARG]), without overrides."""
    spec = next((a.split("=", 1)[1] for a in argv if a.startswith("--config=")), None)
    if spec is None and "--config" in argv:
        spec = argv[argv.index("--config") + 1]
    path, _, arg = spec.partition(":")
    module_spec = importlib.util.spec_from_file_location("_config", path)
    module = importlib.util.module_from_spec(module_spec)
    module_spec.loader.exec_module(module)
    return module.get_config(arg or None)


def validate(config: ml_collections.ConfigDict) -> None:
    """Checks names and sizes that would otherwise fail deep inside a run."""
    models.get(config.model.name)  # raises, listing the registered models
    choices = {"task": (tasks.task_name(config), tasks.NAMES),
               "best_mode": (config.best_mode, ("max", "min")),
               "model.dtype": (config.model.dtype, ("float32", "bfloat16")),
               "frontend.dft": (config.frontend.dft, ("fft", "matmul")),
               "data.train_split": (config.data.train_split, ("train", "train+validation")),
               **{f"evals.{name}.split": (entry.split, ("validation", "test", "train"))
                  for name, entry in config.evals.items()}}
    if "optim" in config:
        choices["optim.name"] = (config.optim.name, ("adamw", "sgd"))
    if "gan" in config:
        models.get(config.discriminator.name)
        choices["gan.loss"] = (config.gan.loss, gan_losses.LOSSES)
    for key, (value, valid) in choices.items():
        if value not in valid:
            raise ValueError(f"Unknown {key} {value!r}; valid: {', '.join(valid)}.")
    for key in ("batch_size", "eval_batch_size"):
        if config[key] <= 0:
            raise ValueError(f"{key} must be positive, got {config[key]}.")
        if config[key] % jax.device_count():
            raise ValueError(f"{key}={config[key]} must be a multiple of the device count "
                             f"({jax.device_count()}).")
    for key in ("total_steps", "log_every_steps", "eval_every_steps", "checkpoint_every_steps"):
        if config[key] <= 0:
            raise ValueError(f"{key} must be positive, got {config[key]}.")
    if "gan" in config and config.gan.n_critic < 1:
        raise ValueError(f"gan.n_critic must be at least 1, got {config.gan.n_critic}.")
    if config.data.crop_seconds <= 0:
        raise ValueError(f"data.crop_seconds must be positive, got {config.data.crop_seconds}.")


def validate_data(config: ml_collections.ConfigDict, features) -> None:
    """Checks the config against the built dataset (`builder.info.features`)."""
    rate = features["audio"].sample_rate
    clip_seconds = features["audio"].shape[0] / rate
    if round(config.data.crop_seconds * rate) > features["audio"].shape[0]:
        raise ValueError(
            f"data.crop_seconds={config.data.crop_seconds} is longer than the clips of "
            f"{config.data.name} ({clip_seconds:g} s stored): pass --config.data.crop_seconds of "
            f"at most {clip_seconds:g}.")
