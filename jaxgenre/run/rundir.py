"""A run's --workdir: the files the trainer writes beside its checkpoints, and the run read back
(config, dataset facts, task and a restored state).

The one restore sequence that evaluation, the classifier's inference (predict, export, the
transfer judge, the GAN's frozen loss classifier) and the transfer CLI all use. Needs no
dataset: the labels and rate come from the `dataset_info.json` written beside `config.json`.
The caller passes the task's constructor (`tasks.create` for any task), so this room needs
none of the tasks.
"""
import dataclasses
import json
from collections.abc import Callable
from typing import Any

import jax
import ml_collections
from absl import logging
from etils import epath

from jaxgenre.core import errors, outputs, sharding
from jaxgenre.data import spec
from jaxgenre.run import checkpointing, config_versions


class RunError(errors.UserError, ValueError):
    """The workdir is not (yet) a run that can be read; the message names the fix."""


@dataclasses.dataclass
class Run:
    workdir: str
    config: ml_collections.ConfigDict
    data: spec.DataSpec
    task: Any  # a jaxgenre.tasks.Task
    state: Any  # the task's state, restored (only the requested items are real arrays)
    state_sharding: Any
    step: int


# What every reader of a run needs from its config.json, whatever the task.
REQUIRED_KEYS = ("data.name", "data.crop_seconds", "model.name", "total_steps")


def load_config(workdir: str) -> ml_collections.ConfigDict:
    """The run's config.json (with keys added since it was saved: `config_versions`). Raises
    FileNotFoundError when there is none, RunError naming the file when it is not JSON (a
    half-written file) or lacks one of REQUIRED_KEYS."""
    path = epath.Path(workdir) / "config.json"
    if not path.exists():
        raise FileNotFoundError(f"{path} not found: is {workdir} a jaxgenre.train --workdir?")
    try:
        values = json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise RunError(f"{path} is not valid JSON ({e.msg}, line {e.lineno} column {e.colno}): "
                       "the file is damaged; restore it from a copy of the run.") from None
    missing = [k for k in REQUIRED_KEYS if not _has_key(values, k)]
    if missing:
        raise RunError(f"{path} lacks {', '.join(missing)}: it is not a jaxgenre.train config; "
                       "restore it from a copy of the run.")
    return config_versions.with_added_keys(ml_collections.ConfigDict(values))


def _has_key(values, dotted: str) -> bool:
    for part in dotted.split("."):
        if not isinstance(values, dict) or part not in values:
            return False
        values = values[part]
    return True


def write(workdir: str, config: ml_collections.ConfigDict, data: spec.DataSpec,
          splits: dict[str, int]) -> None:
    """config.json and dataset_info.json: what `load_config` and `data_spec` read back.
    splits: {split name: examples}, for the record."""
    path = epath.Path(workdir)
    outputs.write_text(path / "config.json", config.to_json(indent=2))
    outputs.write_text(path / "dataset_info.json", json.dumps(
        {"name": data.name, "class_names": list(data.class_names),
         "sample_rate": data.sample_rate, "splits": splits}, indent=2))


def data_spec(workdir: str, config: ml_collections.ConfigDict) -> spec.DataSpec:
    path = epath.Path(workdir) / "dataset_info.json"
    if not path.exists():
        raise RunError(f"{path} not found: the run's labels are unknown; point at a complete "
                       "jaxgenre.train --workdir.")
    info = json.loads(path.read_text())
    rate = int(info["sample_rate"])
    return spec.DataSpec(info["name"], tuple(info["class_names"]), rate,
                          round(config.data.crop_seconds * rate))


def restore(workdir: str, mesh: jax.sharding.Mesh, make_task: Callable[..., Any],
            checkpoint: str = "best", items=None,
            expect_tasks: tuple[str, ...] | None = None) -> Run:
    """Restores `checkpoint` ('best' | 'latest' | a step) of the run in `workdir`.

    make_task(config, data, mesh, training=False) -> the run's task (`tasks.create`, or one task
    class where `expect_tasks` names only it).
    'best' falls back to the latest step, with a warning, when no step carries the best
    metric (e.g. runs on train+validation). items: checkpoint items to read (default all;
    "eval": the task's `eval_items`, what its evaluators use). expect_tasks: refuse a run of
    any other task (a classifier where a generator is wanted, and the reverse). A checkpoint
    that cannot be read (a damaged step: see `checkpointing.resolve_step`, or the items asked
    for do not restore) raises a `RunError` naming its path and the steps that do restore; the
    other steps open as usual, and nothing in the workdir is moved or changed.
    """
    config = load_config(workdir)
    if expect_tasks is not None:
        check_task(workdir, config, expect_tasks)
    data = data_spec(workdir, config)
    best = best_options(config)
    mngr = checkpointing.manager(workdir, read_only=True, **best)
    saved = checkpointing.saved_steps(mngr)
    if not saved:
        raise RunError(f"The run {workdir} has no checkpoint in {mngr.directory}: train it first "
                       f"(python -m jaxgenre.train --config ... --workdir {workdir}).")
    # a damaged step may be the one carrying the metric: resolve_step names it instead
    no_best = mngr.best_step() is None and not checkpointing.damaged_steps(mngr)
    if checkpoint == "best" and (best["best_metric"] is None or no_best):
        why = (f"trained on {config.data.train_split}, it keeps no best"
               if best["best_metric"] is None else f"no step carries {best['best_metric']}")
        logging.warning("No best checkpoint in %s (%s): using the latest, step %d.", workdir, why,
                        saved[-1])
        checkpoint = "latest"
    task = make_task(config, data, mesh, training=False)
    shapes, shardings = sharding.abstract_state(task.init, mesh)
    abstract = checkpointing.abstract_with_shardings(shapes, shardings)
    items = task.eval_items if items == "eval" else items
    try:
        step = checkpointing.resolve_step(mngr, checkpoint)
    except checkpointing.UnreadableCheckpointError as e:
        raise RunError(_with_readable_steps(str(e), mngr, abstract, items)) from e
    try:
        state = checkpointing.restore(mngr, step, abstract, items)
    except Exception as e:  # TensorStore and Orbax raise bare Exception
        raise RunError(_with_readable_steps(
            f"Checkpoint {epath.Path(mngr.directory) / str(step)} cannot be read "
            f"({checkpointing.describe_error(e)})", mngr, abstract, items)) from e
    return Run(workdir, config, data, task, state, shardings, step)


def _with_readable_steps(problem: str, mngr, abstract, items) -> str:
    """`problem`, then the steps whose `items` restore (it reads them all) and the fix."""
    good = checkpointing.readable_steps(mngr, abstract, items)
    return (f"{problem}. Steps that restore: {good or 'none'}; pass one as --checkpoint STEP. "
            "(Resuming training moves unreadable steps aside.)")


def check_task(workdir: str, config: ml_collections.ConfigDict, expect_tasks: tuple[str, ...]
               ) -> None:
    """Refuses a run of any task but `expect_tasks`, naming what to pass instead."""
    name = config_versions.task_name(config)
    if name not in expect_tasks:
        raise RunError(f"{workdir} is a {name!r} run where a {' or '.join(expect_tasks)} run is "
                       f"needed: {_WHAT[expect_tasks[0]]}.")


_WHAT = {"classifier": "pass a genre classifier's workdir (configs/mobilenet.py and the like)",
         "stargan": "pass a style-transfer run's workdir (configs/stargan.py or "
                    "configs/autoencoder.py)"}


def best_options(config: ml_collections.ConfigDict) -> dict:
    """The manager's best-checkpoint settings from a run's config. A run that trains on the
    validation split keeps its checkpoints by step: its validation scores are of clips it
    learned, so no step is honestly "best" (`best_metric` None)."""
    trains_on_validation = "validation" in config.data.get("train_split", "train").split("+")
    return {"best_metric": None if trains_on_validation else config.get("best_metric",
                                                                         "val_accuracy"),
            "best_mode": config.get("best_mode", "max")}
