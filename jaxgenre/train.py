r"""Trains any task (genre classifier, style-transfer GAN, autoencoder), from a laptop CPU to
every host of a TPU pod.

  python -m jaxgenre.train --config configs/mobilenet.py[:demo] --workdir runs/x \
      [--config.key=value ...]

Restarting with the same --workdir resumes the run: same step, same data stream, same random
numbers. The file reads top to bottom: mesh and data, the task (`jaxgenre.tasks`: its models and
optimizers), state (created already sharded, or restored on any device count), the jitted step
and the configured evaluators, then the loop.
"""
from jaxgenre.core import cli

# First of all: before TensorFlow and JAX start their threads and loggers.
cli.prepare_process(relaunch=__name__ == "__main__")

import collections
import contextlib
import sys
import time
from collections.abc import Callable

import jax
import ml_collections
import numpy as np
from absl import app, flags, logging
from clu import metric_writers
from etils import epath
from ml_collections import config_flags

from jaxgenre import evaluators, tasks
from jaxgenre.core import errors, sharding
from jaxgenre.data import input_pipeline, spec
from jaxgenre.run import checkpointing, config_checks, config_versions, preemption, restarts, rundir

_CONFIG = config_flags.DEFINE_config_file(
    "config", None, "Config file, e.g. configs/mobilenet.py:demo.", lock_config=True)
_WORKDIR = flags.DEFINE_string("workdir", None, "Directory for checkpoints, logs and evaluations.")
_COORDINATOR = flags.DEFINE_string("coordinator_address", None,
                                   "host:port of process 0, for GPU clusters without auto-detection.")
_NUM_PROCESSES = cli.integer_flag("num_processes", None, "With --coordinator_address.",
                                  minimum=1)
_PROCESS_ID = cli.integer_flag("process_id", None, "With --coordinator_address.", minimum=0)


class ConfigError(errors.UserError, ValueError):
    """The config cannot train: the message names the key and the fix."""


class NonFiniteLossError(errors.UserError, FloatingPointError):
    """The loss became NaN or Inf; training stopped, the last good checkpoint is kept."""


def check_config(config: ml_collections.ConfigDict) -> None:
    """Refuses a config before any work starts with a `ConfigError` naming the key and the
    fix: its task's sections, the shared ones, then the evaluators and best_metric."""
    with _as_config_error():
        tasks.check_config(config)
        config_checks.validate(config)
        evaluators.check_config(config)


@contextlib.contextmanager
def _as_config_error():
    """The config checks' ValueErrors as `ConfigError`, what the command line shows in a line."""
    try:
        yield
    except ValueError as e:
        raise ConfigError(str(e)) from e


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str,
                       on_evaluation: Callable[[int, dict], None] | None = None) -> dict:
    """Runs training to `config.total_steps`; returns the last evaluation's scalars.

    on_evaluation(step, scalars) is called after each evaluation, once that step's checkpoint
    (if one is due) is saved; an exception it raises stops the run there, the checkpoints kept
    (a sweep's pruner stops a hopeless trial this way).
    Raises `preemption.Preempted` after saving the step reached when SIGTERM arrived.
    """
    config = config_versions.with_added_keys(config)
    check_config(config)
    workdir = epath.Path(workdir)
    # ---------------------------------------------------------------- mesh and data
    mesh = sharding.make_mesh()
    builder = input_pipeline.load_builder(config.data.name, config.data.data_dir,
                                          config.data.manual_dir)
    features = builder.info.features
    with _as_config_error():
        config_checks.validate_data(config, features)
    sample_rate = features["audio"].sample_rate
    data = spec.DataSpec(config.data.name, tuple(features["label"].names), sample_rate,
                          round(config.data.crop_seconds * sample_rate))

    # ---------------------------------------------------------------- task: models, optimizers
    task = tasks.create(config, data, mesh)
    state_shapes, state_sharding = sharding.abstract_state(task.init, mesh)

    # ---------------------------------------------------------------- state: restore or create
    best = rundir.best_options(config)
    if best["best_metric"] is None:
        logging.warning("Training on %s: its validation scores are of clips the model learned, "
                        "so checkpoints are kept by step (the latest %d), not by %s.",
                        config.data.train_split, config.keep_best + 1, config.best_metric)
    mngr = checkpointing.manager(str(workdir), config.keep_best, **best)
    saved = checkpointing.saved_steps(mngr)  # damaged ones too: the restore moves them aside
    saved_step = saved[-1] if saved else None
    changes = {}
    if saved_step is not None and (workdir / "config.json").exists():
        # before anything is written: a refused config leaves the run as it was
        changes = restarts.check(str(workdir), config, state_shapes, saved_step,
                                 lambda saved: _state_shapes(saved, workdir, mesh))
    if jax.process_index() == 0:
        rundir.write(str(workdir), config, data,
                     {k: v.num_examples for k, v in builder.info.splits.items()})
        if changes:
            restarts.record(str(workdir), changes, saved_step)
    if saved_step is not None:
        state, saved_step = checkpointing.restore_newest_readable(
            mngr, checkpointing.abstract_with_shardings(state_shapes, state_sharding),
            workdir / "unreadable_checkpoints")
        logging.info("Resuming from step %d in %s%s", saved_step, mngr.directory,
                     f" with changed {', '.join(changes)}" if changes else "")
    else:
        state = task.warm_start(jax.jit(task.init, out_shardings=state_sharding)())
    start_step = int(state.step)
    logging.info("%s %s: %d parameters, %d devices, %d processes", config_versions.task_name(config),
                 config.model.name, task.num_params(state), jax.device_count(),
                 jax.process_count())
    if start_step >= config.total_steps:
        logging.warning("The run in %s is complete (step %d of total_steps=%d): nothing to "
                        "train. Pass a larger --config.total_steps to continue it.",
                        workdir, start_step, config.total_steps)

    # ---------------------------------------------------------------- jitted step, evaluators
    update_cycle = tasks.jit_update_cycle(task, state_sharding, mesh)
    evals = evaluators.create(config, task, state_sharding, builder, mesh)
    writer = metric_writers.create_default_writer(str(workdir), just_logging=jax.process_index() > 0)

    def evaluate(state, step) -> dict:
        scalars = {}
        for name, ev in evals.items():
            result = ev.run(state)
            scalars.update({f"{name}_{k}": v for k, v in ev.scalars(result).items()})
            ev.summarise(writer, step, result)
        writer.write_scalars(step, scalars)
        logging.info("step %d evaluation: %s", step,
                     ", ".join(f"{k}={v:.4f}" for k, v in scalars.items()))
        return scalars

    # ---------------------------------------------------------------- train loop
    batches = input_pipeline.train_batches(builder, config.data.train_split, config.batch_size,
                                           data.crop_samples, config.seed, start_step, mesh,
                                           config.data.shuffle_buffer, config.data.label)
    progress = _Progress(start_step, config.total_steps, config.batch_size,
                         task.progress_metrics)
    notice = preemption.Notice()
    pending = collections.deque()  # (step, device metrics) not yet checked on host
    window = []  # checked host metrics since the last log
    val = {}

    def check(upto_step):
        """Fetches finished steps' metrics; stops on a NaN/Inf in any of them, naming it."""
        while pending and pending[0][0] <= upto_step:
            step, m = pending.popleft()
            m = jax.device_get(m)
            bad = {k: v for k, v in m.items() if not np.all(np.isfinite(v))}
            if bad:
                mngr.wait_until_finished()
                what = ", ".join(f"{k} is {v}" for k, v in bad.items())
                raise NonFiniteLossError(
                    f"{what.capitalize()} at step {step}; training stopped. The last good "
                    f"checkpoint (step {mngr.latest_step()}) is kept in {mngr.directory}. Lower "
                    "the learning rate or set gradient clipping, then restart to resume.")
            window.append(m)

    try:
        for step in range(start_step + 1, config.total_steps + 1):
            state, metrics = update_cycle[(step - 1) % len(update_cycle)](state, next(batches))
            pending.append((step, metrics))
            check(step - 1)  # one step behind, so the host never waits on the device here
            if step % config.log_every_steps == 0 or step == config.total_steps:
                check(step)
                # each metric over the steps that report it (a D-only step has no G metrics)
                names = dict.fromkeys(k for m in window for k in m)
                summary = {f"train_{k}": float(np.mean([m[k] for m in window if k in m]))
                           for k in names}
                summary.update(progress.update(step), **task.learning_rates(step))
                writer.write_scalars(step, summary)
                logging.info("%s", progress.line(step, summary))
                window.clear()
            is_last = step == config.total_steps
            preempted = notice.reached(step)  # on every process, every step (see preemption)
            if preempted and is_last:
                logging.warning("SIGTERM at the last step: the run is complete; its final "
                                "evaluation is skipped (python -m jaxgenre.evaluate --workdir "
                                "%s evaluates it).", workdir)
            due_eval = (step % config.eval_every_steps == 0 or is_last) and not preempted
            if due_eval or preempted or step % config.checkpoint_every_steps == 0 or is_last:
                check(step)  # never save a state whose metrics were not finite
            if due_eval:
                try:
                    val = evaluate(state, step)
                except Exception:
                    checkpointing.save(mngr, step, state)  # a failed evaluation loses no training
                    mngr.wait_until_finished()
                    raise
            if preempted or step % config.checkpoint_every_steps == 0 or is_last:
                checkpointing.save(mngr, step, state, val if due_eval else None)
                logging.info("step %d: checkpoint saving to %s", step, mngr.directory)
            if due_eval and on_evaluation is not None:
                try:
                    on_evaluation(step, val)
                except BaseException:
                    mngr.wait_until_finished()  # the run stops here with its checkpoints whole
                    raise
            if preempted and not is_last:
                mngr.wait_until_finished()
                raise preemption.Preempted(
                    f"SIGTERM: saved step {step} in {mngr.directory}; run the same command to "
                    "resume from it.")
    finally:
        notice.close()
    mngr.wait_until_finished()
    writer.flush()
    return val


def _state_shapes(config, workdir: epath.Path, mesh):
    """The state shapes a run saved with `config` has (for `restarts.check`)."""
    task = tasks.create(config, rundir.data_spec(str(workdir), config), mesh, training=False)
    return jax.eval_shape(task.init)


class _Progress:
    """Steps/s, examples/s, ETA and a text progress bar with the task's train metrics."""

    def __init__(self, start_step: int, total_steps: int, batch_size: int, metrics):
        self.total, self.batch, self.metrics = total_steps, batch_size, metrics
        self.last_step, self.last_time = start_step, time.perf_counter()

    def update(self, step: int) -> dict:
        now = time.perf_counter()
        rate = (step - self.last_step) / max(now - self.last_time, 1e-9)
        self.last_step, self.last_time = step, now
        return {"steps_per_sec": rate, "examples_per_sec": rate * self.batch,
                "eta_seconds": (self.total - step) / max(rate, 1e-9)}

    def line(self, step: int, s: dict) -> str:
        done = int(30 * step / self.total)
        eta = int(s["eta_seconds"])
        values = " ".join(f"{k} {s[f'train_{k}']:.4f}" for k in self.metrics if f"train_{k}" in s)
        return (f"[{'#' * done}{'.' * (30 - done)}] step {step}/{self.total} {values} "
                f"{s['steps_per_sec']:.2f} steps/s {s['examples_per_sec']:.1f} ex/s "
                f"ETA {eta // 3600}h{eta % 3600 // 60:02d}m{eta % 60:02d}s")


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
    cli.quiet_logs()
    if _WORKDIR.value is None or _CONFIG.value is None:
        raise app.UsageError("--config and --workdir are required.")
    sharding.initialize_distributed(_COORDINATOR.value, _NUM_PROCESSES.value, _PROCESS_ID.value)
    try:
        train_and_evaluate(_CONFIG.value, _WORKDIR.value)
    except preemption.Preempted as e:
        logging.warning("%s", e)
        sys.exit(preemption.EXIT_CODE)


if __name__ == "__main__":
    cli.run(main, flags_parser=config_checks.parse_flags, sigterm_unwinds=False,
            user_errors=(errors.UserError,))
