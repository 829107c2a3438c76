"""What a restart of a run may change: checked before anything in the workdir is written.

A run resumes with the config it is given, which may differ from the one it was saved with.
Safe changes (more `total_steps`, another evaluation interval, a new learning rate) are allowed
and recorded in WORKDIR/config_changes.jsonl. Changes that would not restore, or would restore
into a different model, are refused with the keys that differ, and `config.json` stays the
saved one so evaluation can still read the run:
  - anything that changes the state's structure (array names, shapes or dtypes: another
    model, width, optimizer, number of genres);
  - the task, the dataset, the labels (`data.label`: FMA small has 8 classes either way), or
    the frontend (the model's input or target would silently change meaning).
"""
import json
import time
from collections.abc import Callable
from typing import Any

import jax
import ml_collections
from etils import epath

from jaxgenre.core import errors
from jaxgenre.run import config_checks, rundir

# Keys whose change makes the saved state mean something else, refused even where every shape
# still fits (a key ending in "." stands for its whole section). The one list: a key added to
# a config that changes what trained weights compute belongs here.
MEANING_KEYS = (
    "task", "data.name", "data.label",
    "frontend.",  # the input every model was trained on
    "model.name", "model.skip",  # the generator's residual path: its output means another thing
    "discriminator.name",
    "gan.db_offset", "gan.db_scale",  # the generator's input and output scaling
)


class RestartError(errors.UserError, ValueError):
    """The new config cannot resume this workdir; the message names the keys and the fix."""


def changed(saved: ml_collections.ConfigDict, new: ml_collections.ConfigDict) -> dict:
    """{key: (saved value, new value)} for every key whose value differs (or exists in one).
    Both are taken as read in (`config_versions.with_added_keys`)."""
    a = config_checks.flatten(saved)
    b = config_checks.flatten(json.loads(new.to_json()))  # compared as JSON, as it is saved
    return {k: (a.get(k), b.get(k)) for k in sorted(set(a) | set(b)) if a.get(k) != b.get(k)}


def check(workdir: str, config: ml_collections.ConfigDict, new_shapes, saved_step: int,
          saved_shapes: Callable[[ml_collections.ConfigDict], Any]) -> dict:
    """Refuses a restart `config` cannot make from the run saved in `workdir` at `saved_step`.

    new_shapes: `jax.eval_shape` of the new task's init (the state the restore will fill).
    saved_shapes(saved config): the same for the config the run was saved with.
    Returns the allowed changes {key: (saved, new)} (empty if none).
    """
    saved = rundir.load_config(workdir)
    diff = changed(saved, config)
    if config.total_steps < saved_step:
        raise RestartError(
            f"{workdir} is already at step {saved_step}, past total_steps={config.total_steps}: "
            f"nothing to train. To train further, pass --config.total_steps above {saved_step}; "
            f"to evaluate it, run python -m jaxgenre.evaluate --workdir {workdir}.")
    meaning = [k for k in diff if _changes_meaning(k)]
    if not meaning and diff:
        if _signature(saved_shapes(saved)) != _signature(new_shapes):
            meaning = list(diff)
    if meaning:
        listed = "; ".join(f"{k}: {diff[k][0]!r} -> {diff[k][1]!r}" for k in meaning)
        raise RestartError(
            f"The config differs from the one {workdir} was trained with in a way that cannot "
            f"resume ({listed}). Pass the saved values (see {workdir}/config.json), or start a "
            "new --workdir. Nothing in the workdir was changed.")
    return diff


def _changes_meaning(key: str) -> bool:
    return key in MEANING_KEYS or any(key.startswith(m) for m in MEANING_KEYS if m.endswith("."))


def record(workdir: str, diff: dict, step: int) -> None:
    """Appends the allowed changes made at a restart from `step` to config_changes.jsonl."""
    line = json.dumps({"time": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "resumed_from_step": step,
                       "changes": {k: {"saved": a, "new": b} for k, (a, b) in diff.items()}})
    with (epath.Path(workdir) / "config_changes.jsonl").open("a") as f:
        f.write(line + "\n")


def _signature(shapes) -> tuple:
    """The state's tree structure with every leaf's shape and dtype."""
    leaves, treedef = jax.tree.flatten(shapes)
    return treedef, tuple((x.shape, str(x.dtype)) for x in leaves)
