"""Import directories, and starting a classifier from one (`config.model.init_from`).

An import directory is written by `python -m jaxgenre.import_weights`: import.json (model name,
model_kwargs, num_classes of the imported head or its tags, frontend) and an Orbax checkpoint
of the model's `nnx.State` as a pure dict (without `dense` when the source had no head).

Fine-tuning: every variable of the new model
whose path and shape the import has takes the imported value, BatchNorm statistics included;
the classification head (`dense`) always keeps its fresh initialisation: its outputs are the
import's own classes (ImageNet, musicnn's tags), not our genres, even where their number agrees.
Anything else that does not fit stops the run, naming the variables, before training starts.
"""
import inspect
import json
import os

import jax
import ml_collections
import numpy as np
import orbax.checkpoint as ocp
from etils import epath
from flax import nnx

from jaxgenre import models
from jaxgenre.core import errors, outputs

INFO_FILE = "import.json"  # the import directory's layout (jaxgenre.import_weights writes it)
STATE_DIR = "state"


class PretrainedError(errors.UserError, ValueError):
    """The imported weights cannot start this config: the message names what and the fix."""


class ImportWeightsError(errors.UserError, ValueError):
    """The weights cannot be imported as asked: the message names the problem and the fix."""


def check_new(directory: str) -> None:
    """Refuses an --out that already holds an import or anything else (an import is written
    whole beside it and renamed into place: `save`), or that cannot be written."""
    path = epath.Path(directory)
    if (path / STATE_DIR).exists():
        raise ImportWeightsError(f"{directory} already holds an import; pass a new --out or "
                                 "delete it.")
    if path.exists() and (not path.is_dir() or any(path.iterdir())):
        raise ImportWeightsError(f"--out {directory} exists and is not an empty directory; "
                                 "pass a new one.")
    outputs.check_writable(directory, "--out", directory=True)


def num_classes(info: dict) -> int | None:
    """The imported head's number of outputs (None: imported without a head)."""
    return len(info["tags"]) if "tags" in info else info["num_classes"]


def build_model(info: dict, rngs: nnx.Rngs | None = None) -> nnx.Module:
    """The model import.json describes (a one-output head when the import has none)."""
    return models.get(info["model"])(num_classes(info) or 1, **info["model_kwargs"],
                                     rngs=rngs or nnx.Rngs(0))


def load_model(directory: str) -> tuple[nnx.Module, dict]:
    """(model, info) of an import directory: the model holds the imported weights (call it with
    train=False for the published network); info is import.json."""
    path = epath.Path(directory)
    if not (path / INFO_FILE).exists():
        raise ImportWeightsError(f"{directory} has no {INFO_FILE}: not written by "
                                 "`python -m jaxgenre.import_weights`; run it first.")
    info = json.loads((path / INFO_FILE).read_text())
    if num_classes(info) is None:
        raise ImportWeightsError(f"{directory} was imported without a head (its weights file "
                                 "had none): start a run from it with --config.model.init_from.")
    # Shapes only: initialising the weights we are about to overwrite would take seconds.
    graphdef, state = nnx.split(nnx.eval_shape(lambda: build_model(info)))
    device = jax.sharding.SingleDeviceSharding(jax.devices()[0])  # else Orbax gives NumPy
    abstract = jax.tree.map(lambda a: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=device),
                            nnx.to_pure_dict(state))
    with ocp.StandardCheckpointer() as checkpointer:
        restored = checkpointer.restore(path.absolute() / STATE_DIR, abstract)
    nnx.replace_by_pure_dict(state, restored)
    return nnx.merge(graphdef, state), info


def save(directory: str, state: dict, info: dict) -> None:
    """Writes an import directory: `state` (the model's `nnx.State` as a pure dict) as an Orbax
    checkpoint and `info` (model, model_kwargs, frontend as `frontend.MelConfig` fields, ...)
    as import.json."""
    # Both files in a directory beside `directory`, renamed to it when complete: an interrupted
    # import leaves nothing that `check_new` would refuse and `load_model` could not read.
    with outputs.staged(directory) as staging:
        with ocp.StandardCheckpointer() as checkpointer:  # leaving waits for the write
            checkpointer.save(epath.Path(staging).absolute() / STATE_DIR, state)
        outputs.write_text(epath.Path(staging) / INFO_FILE, json.dumps(info, indent=2))


def read_info(directory: str) -> dict:
    """import.json of an import directory; a clear error if `directory` is not one."""
    path = epath.Path(os.path.expanduser(directory))
    if not path.exists():
        raise PretrainedError(f"model.init_from={directory} does not exist.")
    if not (path / INFO_FILE).exists() or not (path / STATE_DIR).exists():
        raise PretrainedError(
            f"model.init_from={directory} is not a directory written by `python -m "
            f"jaxgenre.import_weights` (it needs {INFO_FILE} and {STATE_DIR}/); run that first.")
    return json.loads((path / INFO_FILE).read_text())


def check_config(config: ml_collections.ConfigDict, sample_rate: int) -> None:
    """Refuses a config whose model or frontend differs from what the weights were trained with:
    same shapes, different meaning."""
    info = read_info(config.model.init_from)
    problems = []
    if config.model.name != info["model"]:
        problems.append(f"model.name {config.model.name!r} (the weights are {info['model']!r})")
    for key, value in info.get("model_kwargs", {}).items():
        ours = _model_kwarg(config.model, key)
        if key != "dropout" and ours != value:
            problems.append(f"model.{key} {ours!r} (imported: {value!r})")
    for key, value in info.get("frontend", {}).items():
        ours = sample_rate if key == "sample_rate" else config.frontend.get(key)
        if ours != value:
            where = "the dataset's sample rate" if key == "sample_rate" else f"frontend.{key}"
            problems.append(f"{where} {ours!r} (imported: {value!r})")
    if problems:
        raise PretrainedError(
            f"model.init_from={config.model.init_from} was trained with another input or model: "
            + "; ".join(problems) + ". Use the config made for these weights (e.g. "
            "configs/musicnn.py with a *_16k dataset) or drop model.init_from.")


def load(directory: str) -> dict:
    """The imported model state as a pure dict of host (NumPy) arrays."""
    read_info(directory)
    path = epath.Path(os.path.expanduser(directory)).absolute() / STATE_DIR
    with ocp.StandardCheckpointer() as checkpointer:
        restored = checkpointer.restore(path)
    return jax.tree.map(np.asarray, restored)


def merge(params: nnx.State, rest: nnx.State, imported: dict, source: str
          ) -> tuple[nnx.State, nnx.State, list[str]]:
    """New (params, rest) with every variable but the head's taken from the import (same path
    and shape); returns also the paths left as initialised: the head's, always, since its
    classes are not the import's (even when their number agrees). Raises PretrainedError if
    a variable is missing from the import or has another shape, or if the import has
    variables the model lacks."""
    flat_imported = flatten(imported)
    kept, problems, out = [], [], []
    for state in (params, rest):
        leaves, treedef = jax.tree_util.tree_flatten_with_path(nnx.to_pure_dict(state))
        new = []
        for path, leaf in leaves:
            name = path_name(path)
            value = flat_imported.pop(name, None)
            if name.split("/")[0] == models.HEAD:
                kept.append(name)
                new.append(leaf)
                continue
            if value is None or value.shape != leaf.shape:
                problems.append(f"{name} {list(leaf.shape)}: " + (
                    "not in the import" if value is None else f"imported {list(value.shape)}"))
                value = leaf
            new.append(np.asarray(value, leaf.dtype))
        merged = jax.tree.map(lambda x: x, state)  # a new container: the arguments stay as they are
        nnx.replace_by_pure_dict(merged, jax.tree_util.tree_unflatten(treedef, new))
        out.append(merged)
    problems += [f"the import's {name} has no place in the model" for name in flat_imported
                 if name.split("/")[0] != models.HEAD]
    if problems:
        raise PretrainedError(f"model.init_from={source} does not fit the model: "
                              + "; ".join(problems) + ". Import weights of this model.")
    return out[0], out[1], kept


def _model_kwarg(model_config: ml_collections.ConfigDict, key: str):
    """config.model's value for the model's keyword `key`: the constructor's default (through
    the class hierarchy) when the config leaves it out, as the model is then built."""
    if key in model_config:
        return model_config[key]
    for cls in models.get(model_config.name).__mro__:
        parameter = inspect.signature(cls.__init__).parameters.get(key)
        if parameter is not None and parameter.default is not inspect.Parameter.empty:
            return parameter.default
    return None


def path_name(path) -> str:
    """A variable's key path in a pure dict as its name in imports: 'blocks/0/conv/kernel'."""
    return jax.tree_util.keystr(path, simple=True, separator="/")


def flatten(tree: dict) -> dict[str, np.ndarray]:
    """{'blocks/0/conv/kernel': leaf, ...} of a pure dict, in its leaves' order."""
    return {path_name(p): v for p, v in jax.tree_util.tree_flatten_with_path(tree)[0]}
