"""Refuses bad configs before any work starts, with messages that name the fix."""
import importlib.util
import os
import sys

import jax
import ml_collections
from absl import flags

from jaxgenre.data import input_pipeline


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
    """`app.run(main, flags_parser=parse_flags)`: `--config` paths resolved from any directory
    (`resolve_config`), a wrong --config.KEY refused with the valid keys, any other bad flag in
    a line or two instead of a traceback."""
    argv = _with_resolved_config(argv)
    try:
        return flags.FLAGS(argv)
    except Exception as e:  # noqa: BLE001  (config files and flag parsers raise anything)
        overrides = [a[len("--config."):].split("=", 1)[0] for a in argv[1:]
                     if a.startswith("--config.")]
        spec = _config_spec(argv)
        valid = list(flatten(_load_config_file(spec))) if overrides and spec else []
        unknown = [k for k in overrides if k not in valid]
        if valid and unknown:
            sys.exit(f"error: unknown config key(s): {', '.join(unknown)}.\n"
                     f"Valid keys: {', '.join(sorted(valid))}")
        message = str(e).strip().splitlines()
        sys.exit(f"error: {message[0] if message else type(e).__name__}\n"
                 "(--helpfull lists the flags; --config.KEY=VALUE sets a config value)")


def resolve_config(spec: str) -> str:
    """'configs/mobilenet.py:demo' -> an existing path (same ARG). A path that does not exist
    from the current directory is looked up among the installed configs (`jaxgenre.configs`,
    the repository's configs/), so the README's commands work from any directory."""
    path, sep, arg = spec.partition(":")
    if os.path.exists(path):
        return spec
    from jaxgenre import configs
    installed = os.path.join(os.path.dirname(configs.__file__), os.path.basename(path))
    if not installed.endswith(".py"):
        installed += ".py"
    if os.path.exists(installed):
        return installed + sep + arg
    names = sorted(f for f in os.listdir(os.path.dirname(installed))
                   if f.endswith(".py") and f not in ("__init__.py", "common.py"))
    sys.exit(f"error: no config file {path!r} here or among the installed configs: "
             f"{', '.join('configs/' + n for n in names)}.")


def _config_spec(argv: list[str]) -> str | None:
    spec = next((a.split("=", 1)[1] for a in argv if a.startswith("--config=")), None)
    if spec is None and "--config" in argv[:-1]:
        spec = argv[argv.index("--config") + 1]
    return spec


def _with_resolved_config(argv: list[str]) -> list[str]:
    spec = _config_spec(argv)
    if spec is None:
        return argv
    resolved = resolve_config(spec)
    return [f"--config={resolved}" if a in (f"--config={spec}", spec) else a
            for a in argv if a != "--config"]


def _load_config_file(spec: str) -> ml_collections.ConfigDict:
    """The config named by PATH[:ARG], without overrides."""
    path, _, arg = spec.partition(":")
    module_spec = importlib.util.spec_from_file_location("_config", path)
    module = importlib.util.module_from_spec(module_spec)
    module_spec.loader.exec_module(module)
    return module.get_config(arg or None)


def validate(config: ml_collections.ConfigDict) -> None:
    """Checks what every task's config shares (names, sizes, rates) that would otherwise fail
    deep inside a run. The task and the evaluators check their own sections
    (`tasks.check_config`, `evaluators.check_config`)."""
    check_choices({"data.label": (config.data.label, input_pipeline.LABELS),
                   "best_mode": (config.best_mode, ("max", "min")),
                   "model.dtype": (config.model.dtype, ("float32", "bfloat16")),
                   "frontend.dft": (config.frontend.dft, ("fft", "matmul")),
                   "frontend.compress": (config.frontend.compress, ("db", "log10_1p")),
                   "data.train_split": (config.data.train_split, ("train", "train+validation"))})
    for key in ("batch_size", "eval_batch_size"):
        if config[key] <= 0:
            raise ValueError(f"{key} must be positive, got {config[key]}.")
        if config[key] % jax.device_count():
            raise ValueError(f"{key}={config[key]} must be a multiple of the device count "
                             f"({jax.device_count()}).")
    for key in ("total_steps", "log_every_steps", "eval_every_steps", "checkpoint_every_steps"):
        if config[key] <= 0:
            raise ValueError(f"{key} must be positive, got {config[key]}.")
    if config.data.crop_seconds <= 0:
        raise ValueError(f"data.crop_seconds must be positive, got {config.data.crop_seconds}.")
    for key, value in flatten(config).items():
        if key.split(".")[-1].endswith("learning_rate") and value is not None and not value > 0:
            raise ValueError(f"{key} must be positive, got {value}: a learning rate of zero "
                             "or below trains nothing or climbs the loss.")


def check_choices(choices: dict) -> None:
    """choices: {config key: (value, valid values)}; refuses the first value not valid,
    listing the valid ones."""
    for key, (value, valid) in choices.items():
        if value not in valid:
            raise ValueError(f"Unknown {key} {value!r}; valid: {', '.join(valid)}.")


def validate_data(config: ml_collections.ConfigDict, features) -> None:
    """Checks the config against the built dataset (`builder.info.features`)."""
    rate = features["audio"].sample_rate
    clip_seconds = features["audio"].shape[0] / rate
    if round(config.data.crop_seconds * rate) > features["audio"].shape[0]:
        raise ValueError(
            f"data.crop_seconds={config.data.crop_seconds} is longer than the clips of "
            f"{config.data.name} ({clip_seconds:g} s stored): pass --config.data.crop_seconds of "
            f"at most {clip_seconds:g}.")
