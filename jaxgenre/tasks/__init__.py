"""The interface between the trainer's loop and what it trains, and the registry of tasks.

A task owns one kind of model end to end: how its state is made, one jitted update, and what
the progress line shows. The loop (`jaxgenre.train`) owns everything else: mesh, data,
checkpoints, evaluators, logging, NaN stops. The config names the task (`config.task`):

  classifier   genre classification (`jaxgenre.tasks.classifier`)
  stargan      adversarial genre style transfer, one generator for every genre (`jaxgenre.tasks.gan`)
  autoencoder  genre-conditioned autoencoder, the non-adversarial baseline (`jaxgenre.tasks.gan`)

Every task trains on the same batches: {"audio": int16 [B, crop_samples], "label": int32 [B]}
(a multi-label classifier, data.label 'genres': label int32 [B, C] multi-hot), batch-sharded
over the mesh; its state is replicated.
"""
import dataclasses
import importlib
from typing import Any, Protocol

import jax
import ml_collections

from jaxgenre.core import sharding


@dataclasses.dataclass(frozen=True)
class DataSpec:
    """What a task needs to know of the dataset."""
    name: str  # e.g. 'fma/small'
    class_names: tuple[str, ...]
    sample_rate: int
    crop_samples: int  # samples per training crop

    @property
    def num_classes(self) -> int:
        return len(self.class_names)


class Task(Protocol):
    """What the loop calls. States are flax struct dataclasses with an `ITEMS` class attribute
    ({checkpoint item name: field names}, see `jaxgenre.run.checkpointing`) and a `step` field."""
    progress_metrics: tuple[str, ...]  # train metrics on the console's progress line
    eval_items: tuple[str, ...]  # checkpoint items its evaluators read (see checkpointing)

    def init(self) -> Any:
        """A fresh state from `config.seed` (pure: the loop jits it with out_shardings)."""

    def warm_start(self, state) -> Any:
        """A fresh state (from `init`, on its shardings) with what the config says to start
        from outside it, e.g. pretrained weights; `state` itself when nothing."""

    def train_step(self, state, batch: dict) -> tuple[Any, dict]:
        """One update on a global batch -> (new state, float32 scalar metrics; a NaN / Inf in any
        of them stops training, so include the loss and gradient norms). Pure; jitted
        by the loop with the state's and the batch's shardings; random numbers come from
        `config.seed` folded with `state.step`, so a resumed run draws the same ones."""

    def learning_rates(self, step: int) -> dict[str, float]:
        """The learning rates the update that produced `step` used (step 1: the schedules'
        first values), for the logs."""

    def num_params(self, state) -> int:
        """Trained parameters, for the start-up line."""


def task_name(config: ml_collections.ConfigDict) -> str:
    return config.get("task", "classifier")  # runs saved before tasks existed were classifiers


# name -> (module, class); imported on use, as each task module imports this one.
_REGISTRY = {"classifier": ("jaxgenre.tasks.classifier", "ClassifierTask"),
             "stargan": ("jaxgenre.tasks.gan", "StarGanTask"),
             "autoencoder": ("jaxgenre.tasks.gan", "AutoencoderTask")}
NAMES = tuple(_REGISTRY)


def create(config: ml_collections.ConfigDict, data: DataSpec, mesh: jax.sharding.Mesh,
           training: bool = True) -> Task:
    """The task `config.task` names; a clear error listing the valid names otherwise.

    training=False: a run read back to evaluate or convert; the task may skip what only its
    loss needs (the GAN's frozen classifier).
    """
    name = task_name(config)
    if name not in _REGISTRY:
        raise ValueError(f"Unknown task {name!r}; valid: {', '.join(NAMES)}.")
    module, cls = _REGISTRY[name]
    return getattr(importlib.import_module(module), cls)(config, data, mesh, training)


def abstract_state(task: Task, mesh: jax.sharding.Mesh):
    """(shapes, shardings) of the task's state: shapes without allocating, every leaf
    replicated (data parallelism: the batch is what is split over the mesh)."""
    shapes = jax.eval_shape(task.init)
    return shapes, jax.tree.map(lambda _: sharding.replicated(mesh), shapes)
