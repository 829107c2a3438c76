"""Runs 3 train steps on the same global batches in one or several processes; saves params.

usage: python -m tests.multiprocess_steps OUT.npz NUM_PROCESSES PROCESS_ID PORT [TASK]
TASK: classifier (default) or stargan. Each process feeds only its slice of every global batch
(as the input pipeline does).
"""
import sys

import jax

from jaxgenre import tasks
from jaxgenre.core import sharding
from jaxgenre.data import spec
from jaxgenre.tasks import classifier, optim


def _classifier_step(config, mesh):
    mel = classifier.mel_config(config, 22050)
    tx = optim.make(config.optim, config.total_steps)
    init, _, state_sharding = classifier.abstract_state(config, 8, tx, mesh)
    state = jax.jit(init, out_shardings=state_sharding)(jax.random.key(0))
    data = sharding.batch_sharding(mesh)
    step = jax.jit(lambda s, b: classifier.train_step(
        s, b, graphdef=classifier.model_graph(config, 8), tx=tx, config=config, mel=mel,
        mesh=mesh, num_classes=8, base_key=jax.random.key(1)),
        in_shardings=(state_sharding, {"audio": data, "label": data}),
        out_shardings=(state_sharding, sharding.replicated(mesh)))
    return state, step, lambda s: s.params.to_pure_dict()


def _gan_step(config, mesh):
    """The StarGAN task as the trainer builds and jits it."""
    data_spec = spec.DataSpec("fma/small", tuple(f"g{i}" for i in range(8)), 22050, 22050)
    task = tasks.create(config, data_spec, mesh)
    _, state_sharding = sharding.abstract_state(task.init, mesh)
    state = jax.jit(task.init, out_shardings=state_sharding)()
    data = sharding.batch_sharding(mesh)
    step = jax.jit(task.train_step, in_shardings=(state_sharding, {"audio": data, "label": data}),
                   out_shardings=(state_sharding, sharding.replicated(mesh)))
    return state, step, lambda s: {"g": s.g_params.to_pure_dict(), "d": s.d_params.to_pure_dict()}


def main(out, num_processes, process_id, port, task="classifier"):
    if num_processes > 1:
        sharding.initialize_distributed(f"localhost:{port}", num_processes, process_id)
    import numpy as np

    from tests import train_helpers
    mesh = sharding.make_mesh()
    if task == "stargan":
        config = train_helpers.gan_config(data_dir="unused")
        state, step, params_of = _gan_step(config, mesh)
    else:
        config = train_helpers.config(data_dir="unused")
        state, step, params_of = _classifier_step(config, mesh)
    data = sharding.batch_sharding(mesh)
    rng = np.random.default_rng(0)
    per_process = config.batch_size // jax.process_count()
    for _ in range(3):
        audio = rng.integers(-8000, 8000, (config.batch_size, 22050), dtype=np.int16)
        label = rng.integers(0, 8, (config.batch_size,), dtype=np.int32)
        mine = slice(jax.process_index() * per_process, (jax.process_index() + 1) * per_process)
        batch = {k: jax.make_array_from_process_local_data(data, v[mine])
                 for k, v in (("audio", audio), ("label", label))}
        state, _ = step(state, batch)
    leaves = jax.tree_util.tree_flatten_with_path(jax.device_get(params_of(state)))[0]
    params = {jax.tree_util.keystr(path): value for path, value in leaves}
    if jax.process_index() == 0:
        np.savez(out, **params)


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), *sys.argv[5:])


def resume_newest_readable(workdir: str, out: str, num_processes: str, process_id: str,
                           port: str) -> None:
    """Resumes the run in `workdir` as `jaxgenre.train` does (manager, then the newest step every
    process reads), as process `process_id` of `num_processes`; then gathers the step each
    process took (a collective, as training's first step is) and process 0 writes them to `out`
    (a JSON list, by process).

    usage: python -c "import sys; from tests import multiprocess_steps as m;
                      m.resume_newest_readable(*sys.argv[1:])" WORKDIR OUT.json N ID PORT
    """
    sharding.initialize_distributed(f"localhost:{port}", int(num_processes), int(process_id))
    import json

    import numpy as np
    from etils import epath
    from jax.experimental import multihost_utils

    from jaxgenre.run import checkpointing, rundir
    config = rundir.load_config(workdir)
    mesh = sharding.make_mesh()
    task = tasks.create(config, rundir.data_spec(workdir, config), mesh)
    shapes, shardings = sharding.abstract_state(task.init, mesh)
    mngr = checkpointing.manager(workdir, config.keep_best, **rundir.best_options(config))
    _, step = checkpointing.restore_newest_readable(
        mngr, checkpointing.abstract_with_shardings(shapes, shardings),
        epath.Path(workdir) / "unreadable_checkpoints")
    steps = multihost_utils.process_allgather(np.int32(step))
    if jax.process_index() == 0:
        with open(out, "w") as f:
            json.dump([int(s) for s in steps], f)
