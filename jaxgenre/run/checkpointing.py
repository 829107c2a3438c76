"""Orbax checkpoints: one layout that training, evaluation, prediction and export all read.

`WORKDIR/checkpoints/<step>/<item>/`: a task's state is saved as named items (its `ITEMS`:
e.g. the classifier's `model`, `optimizer`, `ema`, `progress`; the GAN's `generator`,
`discriminator`, `generator_ema`, two optimizer states), so a reader restores only what it needs
(a judge or a frozen classifier reads `ema` alone). Steps saved right after an evaluation carry
its metrics. Kept: the latest (for resume) and the best `keep_best` by a configurable metric and
direction (for evaluation). Saves are asynchronous. Restores take abstract arrays carrying the
*current* shardings, so a checkpoint written on N devices loads on any other count.

Damaged steps (a file cut short, emptied or deleted): a step whose own files do not read
(`step_damage`) is left out of the manager's steps, so that it opens at all; one whose arrays do
not read fails its restore. Training resumes from the newest step every process reads and moves
the others aside (`restore_newest_readable`); read-only tools name the damaged step when it is
the one asked for (`resolve_step`) and never move anything.
"""
import json

import jax
import numpy as np
import orbax.checkpoint as ocp
from absl import logging
from etils import epath
from jax.experimental import multihost_utils
from orbax.checkpoint import checkpoint_managers as managers

from jaxgenre.core import errors

_LEGACY_ITEM = "default"  # runs saved before named items held the whole state in one item
_STEP_METADATA = "_CHECKPOINT_METADATA"  # Orbax's record of a committed step and its items
_STEP_NAMES = ocp.path.step.standard_name_format()  # checkpoints/<step>, committed steps only


class NoReadableCheckpointError(errors.UserError, RuntimeError):
    """Every saved step of a run failed to restore; the message lists why, step by step."""


class UnreadableCheckpointError(errors.UserError, ValueError):
    """The step asked for is damaged; the message names its directory and what does not read."""


def step_damage(step_dir: epath.Path) -> str | None:
    """What is wrong with the files that say what a saved step holds, in one line; None if they
    read.

    Those files are the step's `_CHECKPOINT_METADATA` (its items: Orbax writes it as it commits
    every step) and, where it lists metrics, the metrics file: what Orbax reads to list and rank
    steps. Orbax itself stops at a metrics file that does not parse, does without a damaged
    `_CHECKPOINT_METADATA`, and takes a step whose metrics file is gone for one saved without
    metrics (quietly no longer a candidate for best). The arrays are checked by restoring them.
    """
    metrics = ocp.checkpoint_manager.METRIC_ITEM_NAME
    try:
        items = _read_json(step_dir, _STEP_METADATA).get("item_handlers")
        # a dict of item names (a run saved as one unnamed item has a single handler name)
        if isinstance(items, dict) and metrics in items:
            _read_json(step_dir, f"{metrics}/{metrics}")
    except ValueError as e:
        return str(e)
    return None


def _read_json(step_dir: epath.Path, name: str):
    try:
        return json.loads((step_dir / name).read_text())
    except (OSError, ValueError) as e:  # missing, unreadable, cut short or empty
        raise ValueError(f"{name} does not read: {describe_error(e)}") from e


class _IntactStepNames(ocp.path.step.NameFormat):
    """Orbax's standard step names, listing only the steps whose own files read (`step_damage`):
    a manager reads the metrics of every step it lists as it opens and reloads, and stops at the
    first metrics file that does not parse."""

    def build_name(self, step: int) -> str:
        return _STEP_NAMES.build_name(step)

    def find_all(self, base_path):
        return (m for m in _STEP_NAMES.find_all(base_path) if step_damage(m.path) is None)

    def find_step(self, base_path, step: int):
        found = _STEP_NAMES.find_step(base_path, step)
        why = step_damage(found.path)
        if why is not None:
            raise UnreadableCheckpointError(f"Checkpoint {found.path} cannot be read ({why})")
        return found


def manager(workdir: str, keep_best: int = 3, best_metric: str | None = "val_accuracy",
            best_mode: str = "max", read_only: bool = False) -> ocp.CheckpointManager:
    """The checkpoint manager of a run. Evaluation jobs open it with `read_only=True`.

    best_metric: a key of the metrics saved with a step (e.g. 'val_accuracy'), or None to keep
    the latest `keep_best` + 1 steps (a run whose evaluation split is part of its training data
    has no honest best); best_mode: 'max' or 'min'. Steps without the metric are not
    candidates for best. Damaged steps (`step_damage`) are not among its steps: `saved_steps` and
    `damaged_steps` list them.
    """
    if best_mode not in ("max", "min"):
        raise ValueError(f"Unknown best_mode {best_mode!r}; valid: max, min.")
    if best_metric is None:
        policy, best = managers.LatestN(n=keep_best + 1), {}
    else:
        policy = managers.AnyPreservationPolicy([
            managers.LatestN(n=1),
            managers.BestN(get_metric_fn=lambda m: m[best_metric], reverse=best_mode == "min",
                           n=keep_best, keep_checkpoints_without_metrics=False),
        ])
        # best_fn also makes Orbax keep the metrics saved with each step
        best = {"best_fn": lambda m: m[best_metric], "best_mode": best_mode}
    options = ocp.CheckpointManagerOptions(
        preservation_policy=policy, **best,
        enable_async_checkpointing=not read_only, read_only=read_only, create=not read_only,
        step_name_format=_IntactStepNames())
    directory = epath.Path(workdir)
    if "://" not in str(workdir):  # Orbax wants absolute local paths; URIs (gs://) are already
        directory = directory.absolute()
    return ocp.CheckpointManager(directory / "checkpoints", options=options)


def to_items(state) -> dict[str, dict]:
    """A state dataclass -> {item name: {field: subtree}} following its class's `ITEMS`."""
    return {item: {f: getattr(state, f) for f in fields} for item, fields in state.ITEMS.items()}


def save(mngr: ocp.CheckpointManager, step: int, state, metrics: dict | None = None) -> None:
    items = to_items(state)
    mngr.save(step, args=ocp.args.Composite(**{k: ocp.args.StandardSave(v)
                                               for k, v in items.items()}),
              metrics={k: float(v) for k, v in metrics.items()} if metrics else None)


def saved_steps(mngr: ocp.CheckpointManager) -> list[int]:
    """Every committed step in the manager's directory, damaged ones included."""
    return sorted(m.step for m in _STEP_NAMES.find_all(mngr.directory))


def damaged_steps(mngr: ocp.CheckpointManager) -> dict[int, str]:
    """{step: what does not read} for the committed steps whose own files are damaged
    (`step_damage`): the ones the manager leaves out."""
    return {m.step: why for m in _STEP_NAMES.find_all(mngr.directory)
            if (why := step_damage(m.path)) is not None}


def resolve_step(mngr: ocp.CheckpointManager, which: str) -> int:
    """'latest' | 'best' | a step number -> a saved step; a clear error if there is none.

    'latest' is the newest step saved. A damaged step (`step_damage`) is never swapped for
    another: asked for by number or as 'latest', or while any step is damaged as 'best' (its
    metrics may be the best), it raises `UnreadableCheckpointError` naming it.
    """
    steps = saved_steps(mngr)
    if not steps:
        raise FileNotFoundError(f"No checkpoint in {mngr.directory}.")
    damaged = damaged_steps(mngr)
    if which == "best" and damaged:
        raise UnreadableCheckpointError(
            "The best step is unknown: " + "; ".join(
                f"checkpoint {epath.Path(mngr.directory) / str(s)} cannot be read ({why})"
                for s, why in damaged.items()))
    if which == "latest":
        step = steps[-1]
    elif which == "best":
        step = mngr.best_step()
    elif not which.isdigit() or int(which) not in steps:
        raise ValueError(f"No checkpoint {which!r} in {mngr.directory}; saved steps: {steps} "
                         "(or use 'best' / 'latest').")
    else:
        step = int(which)
    if step in damaged:
        raise UnreadableCheckpointError(f"Checkpoint {epath.Path(mngr.directory) / str(step)} "
                                        f"cannot be read ({damaged[step]})")
    return step


def restore(mngr: ocp.CheckpointManager, step: int, abstract_state, items=None):
    """Restores `step` into the shapes, dtypes and shardings of `abstract_state`.

    abstract_state: the state dataclass with `jax.ShapeDtypeStruct` leaves that carry
      `.sharding` (from `jax.eval_shape` of the task's init plus the current mesh's shardings).
    items: names of the items to read (default: all); fields of other items keep their
      abstract leaves, so restore only what the caller then uses.
    Each process reads for itself, with no barrier (`_reader`).
    """
    wanted = to_items(abstract_state)
    if items is not None:
        wanted = {k: v for k, v in wanted.items() if k in items}
    step_dir = epath.Path(mngr.directory) / str(step)
    if (step_dir / _LEGACY_ITEM).exists():
        return _reader(ocp.StandardCheckpointHandler()).restore(
            step_dir / _LEGACY_ITEM, args=ocp.args.StandardRestore(abstract_state))
    restored = _reader(ocp.CompositeCheckpointHandler()).restore(step_dir, args=ocp.args.Composite(
        **{k: ocp.args.StandardRestore(v) for k, v in wanted.items()}))
    fields = {f: v for item in wanted for f, v in restored[item].items()}
    return abstract_state.replace(**fields)


def _reader(handler) -> ocp.Checkpointer:
    """A checkpointer that reads on this process alone. Each process reads its own shards; the
    barrier Orbax's manager holds after a restore would leave processes out of step where one of
    them fails to read (`restore_newest_readable` has them agree afterwards instead)."""
    me = jax.process_index()
    return ocp.Checkpointer(handler, multiprocessing_options=ocp.options.MultiprocessingOptions(
        primary_host=me, active_processes={me}))


def restore_newest_readable(mngr: ocp.CheckpointManager, abstract_state, aside_dir: epath.Path):
    """Restores the newest step that every process reads back whole; the steps that do not read
    (the newer ones tried, and any damaged one: `step_damage`) are moved to `aside_dir` (kept for
    inspection, never deleted) with a warning naming each step and why.

    Every process tries the same steps (process 0's list) and they take the first one all of them
    read: processes that see different files (a cache, a copy of their own) would otherwise
    resume different steps and wait for each other forever at the first step of training.
    Returns (state, step). If no step restores, nothing is moved and the error lists each
    step's failure: the run is left as it was for a person to look at.
    """
    steps = _process_0s(saved_steps(mngr))[::-1]  # newest first
    damaged = damaged_steps(mngr)
    intact = _gather([s not in damaged for s in steps])  # [process, step]
    failures = {}
    for i, step in enumerate(steps):
        if intact[:, i].all():
            state, error = _try_restore(mngr, step, abstract_state)
            reads = _gather([error is None])[:, 0]
        else:
            state, error, reads = None, damaged.get(step), intact[:, i]
        if reads.all():
            break
        failures[step] = error or f"does not read on process(es) {np.flatnonzero(~reads).tolist()}"
        logging.warning("Checkpoint %s does not restore (%s); trying an older one.",
                        epath.Path(mngr.directory) / str(step), failures[step])
    else:
        raise NoReadableCheckpointError(
            f"No checkpoint in {mngr.directory} restores; nothing was moved. "
            + "; ".join(f"step {s}: {why}" for s, why in failures.items())
            + ". Restore a copy of the directory, or start the run in a new --workdir.")
    # older damaged steps too: left in place, the read-only tools could not tell the best step
    older = [s for j, s in enumerate(steps) if s < step and not intact[:, j].all()]
    for bad in [*failures, *older]:
        _move_aside(mngr, bad, aside_dir)
    if failures:
        logging.warning("Resuming from step %d; unreadable newer step(s) %s moved to %s.",
                        step, sorted(failures), aside_dir)
    if older:
        logging.warning("Damaged older step(s) %s moved to %s (%s).", older, aside_dir,
                        "; ".join(f"step {s}: {damaged.get(s, 'damaged on another process')}"
                                  for s in older))
    if failures or older:
        mngr.reload()
    return state, step


def _process_0s(steps: list[int]) -> list[int]:
    """Process 0's `steps` on every process (a step list each process reads for itself may
    differ, and the processes must try the same steps)."""
    if jax.process_count() == 1:
        return steps
    n = int(multihost_utils.broadcast_one_to_all(np.int32(len(steps))))
    mine = np.array(steps if jax.process_index() == 0 else [0] * n, np.int32)
    return [int(s) for s in multihost_utils.broadcast_one_to_all(mine)]


def _gather(flags: list[bool]) -> np.ndarray:
    """bool [processes, len(flags)]: every process's `flags` (all pass as many)."""
    if not flags:
        return np.zeros((jax.process_count(), 0), bool)
    return np.asarray(multihost_utils.process_allgather(np.array(flags))).reshape(
        jax.process_count(), len(flags))


def readable_steps(mngr: ocp.CheckpointManager, abstract_state, items=None) -> list[int]:
    """The intact saved steps whose `items` restore (for an error message: reads every step)."""
    return [step for step in mngr.all_steps()
            if _try_restore(mngr, step, abstract_state, items)[1] is None]


def _try_restore(mngr: ocp.CheckpointManager, step: int, abstract_state, items=None):
    """(state, None) if `step` restores, else (None, what went wrong in one line)."""
    try:
        return restore(mngr, step, abstract_state, items), None
    except Exception as e:  # noqa: BLE001  (TensorStore and Orbax raise bare Exception)
        return None, describe_error(e)


def _move_aside(mngr: ocp.CheckpointManager, step: int, aside_dir: epath.Path) -> None:
    """checkpoints/<step> -> aside_dir/<step> (with a suffix if that exists); process 0 moves,
    every process waits for it."""
    if jax.process_index() == 0:
        aside_dir.mkdir(parents=True, exist_ok=True)
        target, n = aside_dir / str(step), 1
        while target.exists():
            target, n = aside_dir / f"{step}.{n}", n + 1
        (epath.Path(mngr.directory) / str(step)).rename(target)
    if jax.process_count() > 1:
        multihost_utils.sync_global_devices(f"checkpoint {step} moved aside")


def describe_error(error: Exception) -> str:
    """'TypeName: first line of the message' (TensorStore's run to pages)."""
    text = str(error).strip().splitlines()
    return f"{type(error).__name__}: {text[0][:200] if text else ''}"


def abstract_with_shardings(shapes, shardings):
    """Pairs `jax.eval_shape` output with shardings: the target of a restore."""
    return jax.tree.map(lambda s, sh: jax.ShapeDtypeStruct(s.shape, s.dtype, sharding=sh),
                        shapes, shardings)
