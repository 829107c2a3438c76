"""The device mesh, the named shardings we use, and multi-host start-up.

One mesh axis, 'data': batches are split over it and the training state is replicated.
"""
import os

import jax
from absl import logging
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

DATA_AXIS = "data"


def initialize_distributed(coordinator_address: str | None = None,
                           num_processes: int | None = None,
                           process_id: int | None = None) -> None:
    """Joins a multi-process run; a no-op for a single process.

    On Cloud TPU pods (and SLURM / Open MPI clusters) JAX finds its peers by itself and the
    arguments stay None. On other GPU clusters pass all three explicitly.
    """
    explicit = coordinator_address is not None
    if explicit or _on_multihost_tpu():
        jax.distributed.initialize(coordinator_address=coordinator_address,
                                   num_processes=num_processes, process_id=process_id)
    logging.info("process %d of %d; %d local devices, %d in all", jax.process_index(),
                 jax.process_count(), jax.local_device_count(), jax.device_count())


def _on_multihost_tpu() -> bool:
    # Cloud TPU VMs set TPU_WORKER_HOSTNAMES; more than one name means a pod slice.
    return len(os.environ.get("TPU_WORKER_HOSTNAMES", "").split(",")) > 1


def make_mesh() -> jax.sharding.Mesh:
    """A 1-D mesh over every device of every process, axis 'data'."""
    return jax.make_mesh((jax.device_count(),), (DATA_AXIS,),
                         axis_types=(jax.sharding.AxisType.Auto,))


def batch_sharding(mesh: jax.sharding.Mesh) -> NamedSharding:
    """Leading (batch) dimension split over 'data'; other dimensions whole."""
    return NamedSharding(mesh, P(DATA_AXIS))


def replicated(mesh: jax.sharding.Mesh) -> NamedSharding:
    """A full copy on every device (parameters, optimizer state, scalars)."""
    return NamedSharding(mesh, P())
