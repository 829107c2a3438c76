r"""Trains a genre classifier, from a laptop CPU to every host of a TPU pod.

  python -m jaxgenre.train --config configs/mobilenet.py[:demo] --workdir runs/x \
      [--config.key=value ...]

Restarting with the same --workdir resumes the run: same step, same data stream, same random
numbers. The file reads top to bottom: mesh and data, model and optimizer, state (created
already sharded, or restored on any device count), jitted steps, then the loop.
"""
from jaxgenre import host_memory

# First of all: before TensorFlow and JAX start their threads (see host_memory).
host_memory.keep_freed_memory()

import collections
import functools
import json
import time

import jax
import ml_collections
import numpy as np
from absl import app, flags, logging
from clu import metric_writers
from etils import epath
from ml_collections import config_flags

from jaxgenre import checkpointing, classifier, config_checks, evaluation, input_pipeline, optim, sharding

_CONFIG = config_flags.DEFINE_config_file(
    "config", None, "Config file, e.g. configs/mobilenet.py:demo.", lock_config=True)
_WORKDIR = flags.DEFINE_string("workdir", None, "Directory for checkpoints, logs and evaluations.")
_COORDINATOR = flags.DEFINE_string("coordinator_address", None,
                                   "host:port of process 0, for GPU clusters without auto-detection.")
_NUM_PROCESSES = flags.DEFINE_integer("num_processes", None, "With --coordinator_address.")
_PROCESS_ID = flags.DEFINE_integer("process_id", None, "With --coordinator_address.")


class NonFiniteLossError(FloatingPointError):
    """The loss became NaN or Inf; training stopped, the last good checkpoint is kept."""


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str) -> dict:
    """Runs training to `config.total_steps`; returns the last validation metrics."""
    config_checks.validate(config)
    workdir = epath.Path(workdir)
    # ---------------------------------------------------------------- mesh and data
    mesh = sharding.make_mesh()
    builder = input_pipeline.load_builder(config.data.name, config.data.data_dir,
                                          config.data.manual_dir)
    features = builder.info.features
    class_names = features["label"].names
    num_classes = len(class_names)
    sample_rate = features["audio"].sample_rate
    crop_samples = round(config.data.crop_seconds * sample_rate)
    mel = classifier.mel_config(config, sample_rate)
    if jax.process_index() == 0:
        workdir.mkdir(parents=True, exist_ok=True)
        (workdir / "config.json").write_text(config.to_json(indent=2))
        (workdir / "dataset_info.json").write_text(
            json.dumps({"name": config.data.name, "class_names": class_names,
                        "sample_rate": sample_rate, "splits": {
                            k: v.num_examples for k, v in builder.info.splits.items()}}, indent=2))

    # ---------------------------------------------------------------- model and optimizer
    tx = optim.make(config.optim, config.total_steps)
    graphdef = classifier.model_graph(config, num_classes)
    init_key, step_key = jax.random.split(jax.random.key(config.seed))
    init, state_shapes, state_sharding = classifier.abstract_state(config, num_classes, tx, mesh)

    # ---------------------------------------------------------------- state: restore or create
    mngr = checkpointing.manager(str(workdir), config.keep_best)
    if mngr.latest_step() is not None:
        state = checkpointing.restore(mngr, mngr.latest_step(), checkpointing.abstract_with_shardings(
            state_shapes, state_sharding))
        logging.info("Resuming from step %d in %s", int(state.step), mngr.directory)
    else:
        state = jax.jit(init, out_shardings=state_sharding)(init_key)
    start_step = int(state.step)
    num_params = sum(x.size for x in jax.tree.leaves(state.params))
    logging.info("%s: %d parameters, %d devices, %d processes", config.model.name, num_params,
                 jax.device_count(), jax.process_count())

    # ---------------------------------------------------------------- jitted steps
    data_sharding = sharding.batch_sharding(mesh)
    replicated = sharding.replicated(mesh)
    train_step = jax.jit(
        functools.partial(classifier.train_step, graphdef=graphdef, tx=tx, config=config, mel=mel,
                          mesh=mesh, num_classes=num_classes, base_key=step_key),
        in_shardings=(state_sharding, {"audio": data_sharding, "label": data_sharding}),
        out_shardings=(state_sharding, replicated), donate_argnums=(0,))
    predict_step = classifier.jit_predict(config, graphdef, mel, mesh, state_sharding)
    evaluator = evaluation.Evaluator(predict_step, builder, config.data.eval_split,
                                     config.eval_batch_size, crop_samples, mesh, class_names)

    # ---------------------------------------------------------------- train loop
    writer = metric_writers.create_default_writer(str(workdir), just_logging=jax.process_index() > 0)
    batches = input_pipeline.train_batches(builder, config.data.train_split, config.batch_size,
                                           crop_samples, config.seed, start_step, mesh,
                                           config.data.shuffle_buffer)
    lr = optim.schedule(config.optim, config.total_steps)
    progress = _Progress(start_step, config.total_steps, config.batch_size)
    pending = collections.deque()  # (step, device metrics) not yet checked on host
    window = []  # checked host metrics since the last log
    val = {}

    def check(upto_step):
        """Fetches finished steps' metrics; stops on a NaN/Inf loss, naming the step."""
        while pending and pending[0][0] <= upto_step:
            step, m = pending.popleft()
            m = jax.device_get(m)
            if not np.isfinite(m["loss"]):
                mngr.wait_until_finished()
                raise NonFiniteLossError(
                    f"Loss is {m['loss']} at step {step}; training stopped. The last good "
                    f"checkpoint (step {mngr.latest_step()}) is kept in {mngr.directory}. Lower "
                    "optim.learning_rate or set optim.grad_clip_norm, then restart to resume.")
            window.append(m)

    for step in range(start_step + 1, config.total_steps + 1):
        state, metrics = train_step(state, next(batches))
        pending.append((step, metrics))
        check(step - 1)  # one step behind, so the host never waits on the device here
        if step % config.log_every_steps == 0 or step == config.total_steps:
            check(step)
            summary = {f"train_{k}": float(np.mean([m[k] for m in window])) for k in window[0]}
            summary.update(progress.update(step), learning_rate=float(lr(step)))
            writer.write_scalars(step, summary)
            logging.info("%s", progress.line(step, summary))
            window.clear()
        is_last = step == config.total_steps
        if step % config.eval_every_steps == 0 or is_last:
            result = evaluator.run(state)
            val = {f"val_{k}": result[k] for k in ("accuracy", "balanced_accuracy", "top3_accuracy",
                                                  "loss")}
            writer.write_scalars(step, val)
            logging.info("step %d validation: %s", step,
                         ", ".join(f"{k}={v:.4f}" for k, v in val.items()))
        if step % config.checkpoint_every_steps == 0 or is_last:
            check(step)  # never save a state whose loss was not finite
            just_evaluated = step % config.eval_every_steps == 0 or is_last
            checkpointing.save(mngr, step, state, val if just_evaluated else None)
    mngr.wait_until_finished()
    writer.flush()
    return val


class _Progress:
    """Steps/s, examples/s, ETA and a text progress bar."""

    def __init__(self, start_step: int, total_steps: int, batch_size: int):
        self.total, self.batch = total_steps, batch_size
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
        return (f"[{'#' * done}{'.' * (30 - done)}] step {step}/{self.total} "
                f"loss {s['train_loss']:.4f} acc {s['train_accuracy']:.3f} "
                f"{s['steps_per_sec']:.2f} steps/s {s['examples_per_sec']:.1f} ex/s "
                f"ETA {eta // 3600}h{eta % 3600 // 60:02d}m{eta % 60:02d}s")


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
    if _WORKDIR.value is None or _CONFIG.value is None:
        raise app.UsageError("--config and --workdir are required.")
    sharding.initialize_distributed(_COORDINATOR.value, _NUM_PROCESSES.value, _PROCESS_ID.value)
    train_and_evaluate(_CONFIG.value, _WORKDIR.value)


if __name__ == "__main__":
    app.run(main, flags_parser=config_checks.parse_flags)
