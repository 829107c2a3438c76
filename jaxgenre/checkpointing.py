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
from etils import epath
from orbax.checkpoint import checkpoint_managers as managers

_LEGACY_ITEM = "default"  # runs saved before named items held the whole state in one item


def manager(workdir: str, keep_best: int = 3, best_metric: str = "val_accuracy",
            best_mode: str = "max", read_only: bool = False) -> ocp.CheckpointManager:
    """The checkpoint manager of a run. Evaluation jobs open it with `read_only=True`.

    best_metric: a key of the metrics saved with a step (e.g. 'val_accuracy'); best_mode: 'max'
    or 'min'. Steps without that metric are not candidates for best.
    """
    if best_mode not in ("max", "min"):
        raise ValueError(f"Unknown best_mode {best_mode!r}; valid: max, min.")
    policy = managers.AnyPreservationPolicy([
        managers.LatestN(n=1),
        managers.BestN(get_metric_fn=lambda m: m[best_metric], reverse=best_mode == "min",
                       n=keep_best, keep_checkpoints_without_metrics=False),
    ])
    options = ocp.CheckpointManagerOptions(
        preservation_policy=policy,
        best_fn=lambda m: m[best_metric], best_mode=best_mode,  # also makes Orbax keep metrics
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


def abstract_with_shardings(shapes, shardings):
    """Pairs `jax.eval_shape` output with shardings: the target of a restore."""
    return jax.tree.map(lambda s, sh: jax.ShapeDtypeStruct(s.shape, s.dtype, sharding=sh),
                        shapes, shardings)
