"""Start a classifier from imported weights (`config.model.init_from`): fine-tuning.

`init_from` is a directory written by `python -m jaxgenre.import_weights` (import.json and an
Orbax checkpoint of the model's `nnx.State` as a pure dict). Every variable of the new model
whose path and shape the import has takes the imported value, BatchNorm statistics included;
the classification head (`dense`, sized for the import's own tags) keeps its fresh
initialisation when its shape differs. Anything else that does not fit stops the run, naming the
variables, before training starts.
"""
import json
import os

import jax
import ml_collections
import numpy as np
import orbax.checkpoint as ocp
from etils import epath
from flax import nnx

from jaxgenre import optim

INFO_FILE = "import.json"  # the import directory's layout (jaxgenre.import_weights writes it)
STATE_DIR = "state"
HEAD = optim.HEAD


class PretrainedError(ValueError):
    """The imported weights cannot start this config: the message names what and the fix."""


def save(directory: str, state: dict, info: dict) -> None:
    """Writes an import directory: `state` (the model's `nnx.State` as a pure dict) as an Orbax
    checkpoint and `info` (model, model_kwargs, frontend as `frontend.MelConfig` fields, ...)
    as import.json."""
    with ocp.StandardCheckpointer() as checkpointer:  # leaving waits for the write
        checkpointer.save(epath.Path(directory).absolute() / STATE_DIR, state)
    (epath.Path(directory) / INFO_FILE).write_text(json.dumps(info, indent=2))


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
        if key != "dropout" and config.model.get(key, value) != value:
            problems.append(f"model.{key} {config.model.get(key)!r} (imported: {value!r})")
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
    flat_imported = _flatten(imported)
    kept, problems, out = [], [], []
    for state in (params, rest):
        leaves, treedef = jax.tree_util.tree_flatten_with_path(nnx.to_pure_dict(state))
        new = []
        for path, leaf in leaves:
            name = jax.tree_util.keystr(path, simple=True, separator="/")
            value = flat_imported.pop(name, None)
            if name.split("/")[0] == HEAD:
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
                 if name.split("/")[0] != HEAD]
    if problems:
        raise PretrainedError(f"model.init_from={source} does not fit the model: "
                              + "; ".join(problems) + ". Import weights of this model.")
    return out[0], out[1], kept


def _flatten(tree: dict) -> dict[str, np.ndarray]:
    leaves = jax.tree_util.tree_flatten_with_path(tree)[0]
    return {jax.tree_util.keystr(p, simple=True, separator="/"): v for p, v in leaves}
