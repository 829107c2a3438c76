"""Orbax checkpoints: one layout that training, evaluation, prediction and export all read.

`WORKDIR/checkpoints/<step>/<item>/`: a task's state is saved as named items (its `ITEMS`:
e.g. the classifier's `model`, `optimizer`, `ema`, `progress`; the GAN's `generator`,
`discriminator`, `generator_ema`, two optimizer states), so a reader restores only what it needs
(a judge or a frozen classifier reads `ema` alone). Steps saved right after an evaluation carry
its metrics. Kept: the latest (for resume) and the best `keep_best` by a configurable metric and
direction (for evaluation). Saves are asynchronous. Restores take abstract arrays carrying the
*current* shardings, so a checkpoint written on N devices loads on any other count.
"""
import jax
import orbax.checkpoint as ocp
from absl import logging
from etils import epath
from jax.experimental import multihost_utils
from orbax.checkpoint import checkpoint_managers as managers

_LEGACY_ITEM = "default"  # runs saved before named items held the whole state in one item


class NoReadableCheckpointError(RuntimeError):
    """Every saved step of a run failed to restore; the message lists why, step by step."""


def manager(workdir: str, keep_best: int = 3, best_metric: str | None = "val_accuracy",
            best_mode: str = "max", read_only: bool = False) -> ocp.CheckpointManager:
    """The checkpoint manager of a run. Evaluation jobs open it with `read_only=True`.

    best_metric: a key of the metrics saved with a step (e.g. 'val_accuracy'), or None to keep
    the latest `keep_best` + 1 steps (a run whose evaluation split is part of its training data
    has no honest best); best_mode: 'max' or 'min'. Steps without the metric are not
    candidates for best.
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
        enable_async_checkpointing=not read_only, read_only=read_only, create=not read_only)
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


def resolve_step(mngr: ocp.CheckpointManager, which: str) -> int:
    """'latest' | 'best' | a step number -> a saved step; a clear error if there is none."""
    steps = mngr.all_steps()
    if not steps:
        raise FileNotFoundError(f"No checkpoint in {mngr.directory}.")
    if which == "latest":
        return mngr.latest_step()
    if which == "best":
        return mngr.best_step()
    if not which.isdigit() or int(which) not in steps:
        raise ValueError(f"No checkpoint {which!r} in {mngr.directory}; saved steps: {steps} "
                         "(or use 'best' / 'latest').")
    return int(which)


def restore(mngr: ocp.CheckpointManager, step: int, abstract_state, items=None):
    """Restores `step` into the shapes, dtypes and shardings of `abstract_state`.

    abstract_state: the state dataclass with `jax.ShapeDtypeStruct` leaves that carry
      `.sharding` (from `jax.eval_shape` of the task's init plus the current mesh's shardings).
    items: names of the items to read (default: all); fields of other items keep their
      abstract leaves, so restore only what the caller then uses.
    """
    wanted = to_items(abstract_state)
    if items is not None:
        wanted = {k: v for k, v in wanted.items() if k in items}
    if (epath.Path(mngr.directory) / str(step) / _LEGACY_ITEM).exists():
        return mngr.restore(step, args=ocp.args.StandardRestore(abstract_state))
    restored = mngr.restore(step, args=ocp.args.Composite(
        **{k: ocp.args.StandardRestore(v) for k, v in wanted.items()}))
    fields = {f: v for item in wanted for f, v in restored[item].items()}
    return abstract_state.replace(**fields)


def restore_newest_readable(mngr: ocp.CheckpointManager, abstract_state, aside_dir: epath.Path):
    """Restores the newest step that reads back whole; newer ones that do not are moved to
    `aside_dir` (kept for inspection, never deleted) with a warning naming the step and why.

    Returns (state, step). If no step restores, nothing is moved and the error lists each
    step's failure: the run is left as it was for a person to look at.
    """
    failures = {}
    for step in sorted(mngr.all_steps(), reverse=True):
        state, error = _try_restore(mngr, step, abstract_state)
        if error is not None:
            failures[step] = error
            logging.warning("Checkpoint %s does not restore (%s); trying an older one.",
                            epath.Path(mngr.directory) / str(step), error)
            continue
        for bad in failures:
            _move_aside(mngr, bad, aside_dir)
        if failures:
            mngr.reload()
            logging.warning("Resuming from step %d; unreadable newer step(s) %s moved to %s.",
                            step, sorted(failures), aside_dir)
        return state, step
    raise NoReadableCheckpointError(
        f"No checkpoint in {mngr.directory} restores; nothing was moved. "
        + "; ".join(f"step {s}: {why}" for s, why in failures.items())
        + ". Restore a copy of the directory, or start the run in a new --workdir.")


def readable_steps(mngr: ocp.CheckpointManager, abstract_state, items=None) -> list[int]:
    """The saved steps whose `items` restore (for an error message: reads every step)."""
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
