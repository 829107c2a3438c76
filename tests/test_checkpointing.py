"""Named checkpoint items: partial restores, best-N by a configured metric and direction, and
runs saved before named items still restoring."""
import jax
import numpy as np
import orbax.checkpoint as ocp

from jaxgenre.core import sharding
from jaxgenre.run import checkpointing
from jaxgenre.tasks import classifier, optim
from tests import train_helpers as th


def _state_and_target():
    config = th.config("/unused")
    tx = optim.make(config.optim, config.total_steps)
    init, shapes, shardings = classifier.abstract_state(config, 8, tx, sharding.make_mesh())
    state = jax.jit(init, out_shardings=shardings)(jax.random.key(0))
    return state, checkpointing.abstract_with_shardings(shapes, shardings)


def _same(a, b) -> bool:
    return all(np.array_equal(x, y) for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b),
                                                      strict=True))


def test_items_restore_alone_and_best_follows_the_configured_direction(tmp_path):
    state, target = _state_and_target()
    mngr = checkpointing.manager(str(tmp_path), keep_best=1, best_metric="val_loss",
                                 best_mode="min")
    for step, loss in ((1, 0.5), (2, 0.3), (3, 0.9)):
        checkpointing.save(mngr, step, state.replace(step=state.step + step), {"val_loss": loss})
    mngr.wait_until_finished()
    assert sorted(p.name for p in (tmp_path / "checkpoints" / "3").iterdir() if p.is_dir()) == \
        sorted(["model", "optimizer", "ema", "progress", "metrics"])
    assert mngr.all_steps() == [2, 3] and mngr.best_step() == 2  # lowest loss, and the latest
    assert checkpointing.resolve_step(mngr, "best") == 2
    assert checkpointing.resolve_step(mngr, "latest") == 3
    only_ema = checkpointing.restore(mngr, 2, target, items=("ema",))
    assert _same(only_ema.ema_params, state.ema_params)
    assert isinstance(jax.tree.leaves(only_ema.opt_state)[0], jax.ShapeDtypeStruct)  # not read
    full = checkpointing.restore(mngr, 3, target)
    assert int(full.step) == 3 and _same(full.opt_state, state.opt_state)


def test_a_run_saved_as_one_unnamed_item_still_restores(tmp_path):
    state, target = _state_and_target()
    old = ocp.CheckpointManager((tmp_path / "checkpoints").absolute())
    old.save(5, args=ocp.args.StandardSave(state))  # the layout before named items
    old.wait_until_finished()
    restored = checkpointing.restore(checkpointing.manager(str(tmp_path), read_only=True), 5,
                                     target, items=("ema",))
    assert _same(restored.params, state.params) and _same(restored.ema_params, state.ema_params)
