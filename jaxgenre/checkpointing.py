"""Orbax checkpoints: one layout that training, evaluation, prediction and export all read.

`WORKDIR/checkpoints/<step>/` holds the `TrainState`; steps saved right after a validation
carry its metrics. Kept: the latest (for resume) and the best `keep_best` by validation
accuracy (for evaluation). Saves are asynchronous. Restores take abstract arrays carrying the
*current* shardings, so a checkpoint written on N devices loads on any other count.
"""
import jax
import orbax.checkpoint as ocp
from etils import epath
from orbax.checkpoint import checkpoint_managers as managers

BEST_METRIC = "val_accuracy"


def manager(workdir: str, keep_best: int = 3, read_only: bool = False) -> ocp.CheckpointManager:
    """The checkpoint manager of a run. Evaluation jobs open it with `read_only=True`."""
    policy = managers.AnyPreservationPolicy([
        managers.LatestN(n=1),
        managers.BestN(get_metric_fn=lambda m: m[BEST_METRIC], reverse=False, n=keep_best,
                       keep_checkpoints_without_metrics=False),
    ])
    options = ocp.CheckpointManagerOptions(
        preservation_policy=policy,
        best_fn=lambda m: m[BEST_METRIC], best_mode="max",  # also makes Orbax persist metrics
        enable_async_checkpointing=not read_only, read_only=read_only, create=not read_only)
    directory = epath.Path(workdir)
    if "://" not in str(workdir):  # Orbax wants absolute local paths; URIs (gs://) are already
        directory = directory.absolute()
    return ocp.CheckpointManager(directory / "checkpoints", options=options)


def save(mngr: ocp.CheckpointManager, step: int, state, metrics: dict | None = None) -> None:
    mngr.save(step, args=ocp.args.StandardSave(state),
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


def restore(mngr: ocp.CheckpointManager, step: int, abstract_state):
    """Restores `step` into the shapes, dtypes and shardings of `abstract_state`.

    abstract_state: a pytree of `jax.ShapeDtypeStruct` with `.sharding` set (from
      `jax.eval_shape` of the state's init plus the current mesh's shardings).
    """
    return mngr.restore(step, args=ocp.args.StandardRestore(abstract_state))


def abstract_with_shardings(shapes, shardings):
    """Pairs `jax.eval_shape` output with shardings: the target of a restore."""
    return jax.tree.map(lambda s, sh: jax.ShapeDtypeStruct(s.shape, s.dtype, sharding=sh),
                        shapes, shardings)
