"""The device mesh, the named shardings we use, and multi-host start-up.

One mesh axis, 'data': batches are split over it and the training state is replicated.
"""
from collections.abc import Callable
from typing import Any

import jax
import numpy as np
from absl import logging
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

from jaxgenre.core import errors

DATA_AXIS = "data"


def initialize_distributed(coordinator_address: str | None = None,
                           num_processes: int | None = None,
                           process_id: int | None = None) -> None:
    """Joins a multi-process run; a no-op for a single process.

    On Cloud TPU pods, SLURM, Open MPI and Kubernetes JobSets JAX finds its peers from the
    environment and the arguments stay None. On other GPU clusters pass all three explicitly.
    """
    cluster = _detected_cluster()
    if coordinator_address is not None or (cluster and cluster.get_process_count() > 1):
        logging.info("joining a multi-process run (%s)",
                     "explicit address" if coordinator_address else cluster.__name__)
        jax.distributed.initialize(coordinator_address=coordinator_address,
                                   num_processes=num_processes, process_id=process_id)
    logging.info("process %d of %d; %d local devices, %d in all", jax.process_index(),
                 jax.process_count(), jax.local_device_count(), jax.device_count())


def _detected_cluster():
    """The cluster environment `jax.distributed.initialize()` would detect, or None.

    JAX's own detection (the same list, order and opt-in rule it uses), so we call initialize
    exactly when it can find its peers. JAX exposes no public API for it.
    """
    from jax._src import clusters
    return next((env for env in clusters.ClusterEnv._cluster_types
                 if not env.opt_in_only_method and env.is_env_present()), None)


def make_mesh(devices=None) -> jax.sharding.Mesh:
    """A 1-D mesh, axis 'data', over `devices` (default: every device of every process)."""
    devices = jax.devices() if devices is None else devices
    return jax.make_mesh((len(devices),), (DATA_AXIS,), devices=devices,
                         axis_types=(jax.sharding.AxisType.Auto,))


def batch_sharding(mesh: jax.sharding.Mesh) -> NamedSharding:
    """Leading (batch) dimension split over 'data'; other dimensions whole."""
    return NamedSharding(mesh, P(DATA_AXIS))


def replicated(mesh: jax.sharding.Mesh) -> NamedSharding:
    """A full copy on every device (parameters, optimizer state, scalars)."""
    return NamedSharding(mesh, P())


def abstract_state(init: Callable[[], Any], mesh: jax.sharding.Mesh):
    """(shapes, shardings) of the state `init` makes: shapes without allocating, every leaf
    replicated (data parallelism: the batch is what is split over the mesh)."""
    shapes = jax.eval_shape(init)
    return shapes, jax.tree.map(lambda _: replicated(mesh), shapes)


def round_up(n: int, multiple: int) -> int:
    """The smallest multiple of `multiple` >= n: a batch that gives each device whole rows."""
    return -(-n // multiple) * multiple


def pad_rows(x: np.ndarray, multiple: int) -> np.ndarray:
    """x [n, ...] with zero rows appended up to a multiple of `multiple` rows."""
    pad = round_up(len(x), multiple) - len(x)
    return np.concatenate([x, np.zeros((pad,) + x.shape[1:], x.dtype)]) if pad else x


def from_host(x: np.ndarray, mesh: jax.sharding.Mesh) -> jax.Array:
    """A global array of x [B, ...], batch-sharded over `mesh`, from a host array that every
    process holds in full (B a multiple of the device count: see `pad_rows`)."""
    return jax.make_array_from_callback(x.shape, batch_sharding(mesh), lambda index: x[index])


def check_on_process_0(check: Callable[[], None], what: str) -> None:
    """Runs `check` (raising `errors.UserError`) on process 0 alone, where the outputs are
    written, and raises on every process when it fails (process 0 its own error, the others
    one naming `what`), so that no process waits for the others at a collective."""
    problem = None
    if jax.process_index() == 0:
        try:
            check()
        except errors.UserError as e:
            problem = e
    if jax.process_count() > 1:
        from jax.experimental import multihost_utils
        failed = bool(multihost_utils.broadcast_one_to_all(np.bool_(problem is not None)))
        if failed and problem is None:
            problem = errors.UserError(f"process 0 refused {what}; its log says why.")
    if problem is not None:
        raise problem
