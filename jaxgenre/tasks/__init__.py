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
import functools
from collections.abc import Callable
from typing import Any, Protocol

import jax
import ml_collections

from jaxgenre.core import sharding
from jaxgenre.data.spec import DataSpec
from jaxgenre.run import config_versions
from jaxgenre.tasks import classifier, gan


class Task(Protocol):
    """What the loop and the run readers call. States are flax struct dataclasses with an
    `ITEMS` class attribute ({checkpoint item name: field names}, see
    `jaxgenre.run.checkpointing`) and a `step` field."""
    data: DataSpec
    progress_metrics: tuple[str, ...]  # train metrics on the console's progress line
    eval_items: tuple[str, ...]  # checkpoint items its evaluators read (see checkpointing)

    @staticmethod
    def check_config(config: ml_collections.ConfigDict) -> None:
        """Raises ValueError naming the key, the valid values and the fix for a config this
        task cannot train; called before anything is built."""

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

    def step_inputs(self) -> Any:
        """Frozen arrays every update reads besides the state and the batch (the classifier's
        distillation teacher), or None. Optional: a task without the method has none. They
        reach the jitted step as a third, replicated, never donated argument, not as constants
        compiled into it (a multi-process mesh forbids those, and they would copy the weights
        into the program)."""

    def train_steps(self) -> tuple[Callable, ...]:
        """The update functions (like `train_step`) the loop cycles through, one per step: step
        s runs `train_steps()[(s - 1) % len]`. `(self.train_step,)` for most tasks; the StarGAN
        with n_critic k: its full step, then k - 1 discriminator-only steps. A function that
        repeats is the same object (jitted once). Its metrics may leave out what it does not
        compute (a D-only step: G's)."""

    def learning_rates(self, step: int) -> dict[str, float]:
        """The learning rates the update that produced `step` used (step 1: the schedules'
        first values), for the logs."""

    def num_params(self, state) -> int:
        """Trained parameters, for the start-up line."""


class GenreClassifier(Task, Protocol):
    """What the classification evaluator calls of a classifier task (`classifier`)."""

    def predict(self, state, batch: dict) -> tuple[jax.Array, jax.Array]:
        """{audio: int16 [B, crops, crop_samples]} -> (clip logits [B, C], penultimate
        features [B, D]), float32, from the averaged weights. Pure; jitted by the caller."""


class StyleTransfer(Task, Protocol):
    """What the transfer proxy evaluator and the generator method call of a style-transfer
    task (`gan.StarGanTask`, `gan.AutoencoderTask`). Spectrograms: generator input
    [B, T, M, 1] float32; dB: fixed-reference log-mel [B, T, M] float32."""
    mel: Any  # frontend.MelConfig of the generator's analysis (fixed `ref`)
    gan: ml_collections.ConfigDict  # config.gan (classifier_workdir, db scaling, weights)

    def power(self, audio: jax.Array, key: jax.Array | None = None) -> jax.Array:
        """int16 PCM [B, N] -> |STFT|^2 [B, T, n_fft // 2 + 1]; a random gain with `key`."""

    def from_power(self, power: jax.Array) -> jax.Array:
        """|STFT|^2 -> generator input."""

    def spectrogram(self, audio: jax.Array, key: jax.Array | None = None) -> jax.Array:
        """int16 PCM [B, N] -> generator input."""

    def convert(self, state, x: jax.Array, target: jax.Array) -> jax.Array:
        """Generator input, target genres int32 [B] -> converted generator output, by the
        averaged generator."""

    def to_db(self, x: jax.Array) -> jax.Array:
        """Generator input or output -> dB."""


_REGISTRY = {"classifier": classifier.ClassifierTask,
             "stargan": gan.StarGanTask,
             "autoencoder": gan.AutoencoderTask}
NAMES = tuple(_REGISTRY)


def create(config: ml_collections.ConfigDict, data: DataSpec, mesh: jax.sharding.Mesh,
           training: bool = True) -> Task:
    """The task `config.task` names; a clear error listing the valid names otherwise.

    training=False: a run read back to evaluate or convert; the task may skip what only its
    loss needs (the GAN's frozen classifier).
    """
    return get(config)(config, data, mesh, training)


def jit_update_cycle(task: Task, state_sharding, mesh: jax.sharding.Mesh) -> list[Callable]:
    """`task.train_steps()` jitted as the trainer runs them: state replicated, the batch split
    over `mesh`, metrics replicated, the state donated; a function that repeats in the cycle
    is compiled once. Step s runs `cycle[(s - 1) % len(cycle)](state, batch)`; a task's
    `step_inputs` are passed to each as its third argument."""
    data = sharding.batch_sharding(mesh)
    inputs = task.step_inputs() if hasattr(task, "step_inputs") else None
    in_shardings = (state_sharding, {"audio": data, "label": data})
    if inputs is not None:
        in_shardings += (sharding.replicated(mesh),)
    step_fns, jitted = task.train_steps(), {}
    for fn in step_fns:
        jitted.setdefault(id(fn), jax.jit(
            fn, in_shardings=in_shardings,
            out_shardings=(state_sharding, sharding.replicated(mesh)), donate_argnums=(0,)))
    cycle = [jitted[id(fn)] for fn in step_fns]
    if inputs is None:
        return cycle
    return [functools.partial(_with_inputs, step, inputs) for step in cycle]


def _with_inputs(step: Callable, inputs: Any, state, batch):
    return step(state, batch, inputs)


def check_config(config: ml_collections.ConfigDict) -> None:
    """Refuses a config the task it names cannot train (unknown names, impossible values),
    with the valid choices; the sections every task shares are `config_checks.validate`'s."""
    get(config).check_config(config)


def get(config: ml_collections.ConfigDict) -> type:
    """The task class `config.task` names; a clear error listing the valid names otherwise."""
    name = config_versions.task_name(config)
    if name not in _REGISTRY:
        raise ValueError(f"Unknown task {name!r}; valid: {', '.join(NAMES)}.")
    return _REGISTRY[name]
