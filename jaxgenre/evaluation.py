"""Whole-clip classification metrics, shared by the trainer (validation) and `jaxgenre.evaluate`;
`CheckpointEvaluator` restores a run's checkpoints on this process's devices and runs the run's
configured evaluators on them.

Each clip is cut into crops that cover it; its logits are the mean over crops. Metrics are
computed on host from every process's predictions, padding masked out.
"""
import json
import time

import jax
import numpy as np
from absl import logging
from etils import epath
from jax.experimental import multihost_utils
from sklearn import metrics as skm

from jaxgenre import checkpointing, evaluators, input_pipeline, runs, sharding


class ClassificationEvaluator:
    """Genre accuracy of a classifier state on one split (config.evals type 'classification').

    Args:
      task: a `classifier.ClassifierTask` (its `predict`: (state, {audio int16 [B, crops, N]})
        -> clip logits [B, C] float32).
      state_sharding: the state's shardings (the predict step is jitted with them).
      builder, split, batch_size (clips, global), mesh: where the clips come from.
    """

    def __init__(self, task, state_sharding, builder, split: str, batch_size: int, mesh):
        self.builder, self.split, self.batch_size, self.mesh = builder, split, batch_size, mesh
        self.crop_samples = task.data.crop_samples
        self.class_names = list(task.data.class_names)
        data = sharding.batch_sharding(mesh)
        self.predict_fn = jax.jit(task.predict, in_shardings=(state_sharding, {"audio": data}),
                                  out_shardings=data)

    def predict(self, state) -> tuple[np.ndarray, np.ndarray]:
        """(logits [N, C] float32, labels [N] int32) of every clip of the split, once."""
        logits, labels = [], []
        for batch in input_pipeline.eval_batches(self.builder, self.split, self.batch_size,
                                                 self.crop_samples, self.mesh):
            out = self.predict_fn(state, {"audio": batch["audio"]})
            out, label, mask = multihost_utils.process_allgather(
                (out, batch["label"], batch["mask"]), tiled=True)
            logits.append(out[mask])
            labels.append(label[mask])
        return np.concatenate(logits), np.concatenate(labels)

    def run(self, state) -> dict:
        return classification_metrics(*self.predict(state), self.class_names)

    @staticmethod
    def scalars(result: dict) -> dict[str, float]:
        return {k: result[k] for k in ("accuracy", "balanced_accuracy", "top3_accuracy", "loss")}

    def summarise(self, writer, step: int, result: dict) -> None:
        """Nothing beyond the scalars."""

    @staticmethod
    def table(result: dict) -> str:
        return format_table(result)

    def write(self, result: dict, out_dir: str) -> list[str]:
        """`<split>_<step>.json` and a confusion-matrix PNG."""
        return list(write_report(result, out_dir, f"{self.split}_{result['step']}"))


def classification_metrics(logits: np.ndarray, labels: np.ndarray, class_names) -> dict:
    """accuracy, balanced_accuracy, top3_accuracy, loss, per-genre precision/recall/F1,
    confusion_matrix (rows: true genre, columns: predicted), num_examples."""
    num_classes = len(class_names)
    pred = logits.argmax(-1)
    classes = list(range(num_classes))
    precision, recall, f1, support = skm.precision_recall_fscore_support(
        labels, pred, labels=classes, zero_division=0)
    log_probs = jax.nn.log_softmax(logits.astype(np.float64))
    top3 = np.argsort(-logits, axis=-1)[:, :3]
    return {
        "accuracy": float(np.mean(pred == labels)),
        "balanced_accuracy": float(skm.balanced_accuracy_score(labels, pred)),
        "top3_accuracy": float(np.mean((top3 == labels[:, None]).any(-1))),
        "loss": float(-np.mean(np.take_along_axis(np.asarray(log_probs), labels[:, None], -1))),
        "per_genre": {name: {"precision": float(precision[i]), "recall": float(recall[i]),
                             "f1": float(f1[i]), "support": int(support[i])}
                      for i, name in enumerate(class_names)},
        "confusion_matrix": skm.confusion_matrix(labels, pred, labels=classes).tolist(),
        "num_examples": len(labels),
    }


def format_table(result: dict) -> str:
    """A readable per-genre table, then the headline numbers, accuracy last."""
    rows = [f"{'genre':<22}{'precision':>10}{'recall':>10}{'f1':>10}{'clips':>8}"]
    for name, m in result["per_genre"].items():
        rows.append(f"{name:<22}{m['precision']:>10.3f}{m['recall']:>10.3f}{m['f1']:>10.3f}"
                    f"{m['support']:>8d}")
    rows += [f"clips: {result['num_examples']}   step: {result.get('step', '-')}",
             f"top-3 accuracy:    {result['top3_accuracy']:.4f}",
             f"balanced accuracy: {result['balanced_accuracy']:.4f}",
             f"accuracy:          {result['accuracy']:.4f}"]
    return "\n".join(rows)


def write_report(result: dict, out_dir: str, name: str) -> tuple[str, str]:
    """Writes `<out_dir>/<name>.json` and a confusion-matrix `<name>.png`; returns both paths."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    out = epath.Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    json_path, png_path = out / f"{name}.json", out / f"{name}.png"
    json_path.write_text(json.dumps(result, indent=2))
    names = list(result["per_genre"])
    cm = np.array(result["confusion_matrix"])
    fig, ax = plt.subplots(figsize=(1.0 + 0.6 * len(names), 1.0 + 0.6 * len(names)))
    ax.imshow(cm, cmap="Blues")
    ax.set_xticks(range(len(names)), names, rotation=60, ha="right")
    ax.set_yticks(range(len(names)), names)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    for (i, j), v in np.ndenumerate(cm):
        ax.text(j, i, str(v), ha="center", va="center", fontsize=7,
                color="white" if v > cm.max() / 2 else "black")
    ax.set_title(f"{name}: accuracy {result['accuracy']:.3f}")
    fig.tight_layout()
    with png_path.open("wb") as f:
        fig.savefig(f, dpi=120)
    plt.close(fig)
    return str(json_path), str(png_path)


class CheckpointEvaluator:
    """Restores checkpoints of one run onto this process's devices and runs its configured
    evaluators (`config.evals`) on one split, any task. Reads only what evaluation uses (the
    averaged weights, not the optimizer state)."""

    def __init__(self, workdir: str, split: str, data_dir: str | None = None,
                 output_dir: str | None = None):
        self.workdir, self.split = workdir, split
        self.output_dir = output_dir or str(epath.Path(workdir) / "eval")
        self.config = runs.load_config(workdir)
        if data_dir:
            self.config.data.data_dir = data_dir
        self.mesh = sharding.make_mesh()
        self.mngr = checkpointing.manager(workdir, read_only=True,
                                          **runs.best_options(self.config))
        self.builder = input_pipeline.load_builder(self.config.data.name,
                                                   self.config.data.data_dir,
                                                   self.config.data.manual_dir)

    def evaluate(self, which: str) -> dict:
        """Evaluates checkpoint `which`, prints each table, then writes the reports under
        `output_dir`; returns the first evaluator's result."""
        run = runs.restore(self.workdir, self.mesh, which, items="eval")
        results = {}
        for name, ev in evaluators.create(self.config, run.task, run.state_sharding, self.builder,
                                          self.mesh, split=self.split).items():
            result = ev.run(run.state)
            result.update(step=run.step, split=self.split, checkpoint=which, evaluator=name,
                          model=self.config.model.name, dataset=self.config.data.name)
            if jax.process_index() == 0:
                print(ev.table(result), flush=True)  # first: a failed write loses nothing seen
                self._write(ev, result)
            results[name] = result
        return next(iter(results.values()))

    def _write(self, ev, result: dict) -> None:
        try:
            paths = ev.write(result, self.output_dir)
        except OSError as e:
            raise OSError(f"Could not write the report under {self.output_dir} ({e}); the "
                          "results are printed above. Pass --output_dir DIR to write elsewhere."
                          ) from e
        logging.info("wrote %s", ", ".join(paths))

    def watch(self, poll_seconds: int) -> None:
        """Evaluates each new checkpoint until one at or past the run's `total_steps` (read
        again at every poll: a resumed run may have raised it) is done."""
        done = set()
        while True:
            self.mngr.reload()
            total = runs.load_config(self.workdir).total_steps
            for step in sorted(set(self.mngr.all_steps()) - done):
                try:
                    self.evaluate(str(step))
                except (FileNotFoundError, ValueError, runs.RunError) as e:
                    self.mngr.reload()
                    if step in self.mngr.all_steps():
                        raise
                    # the trainer's manager deleted it (kept neither latest nor best) meanwhile
                    logging.info("step %d was deleted before it was read; skipped (%s)", step,
                                 checkpointing.describe_error(e))
                done.add(step)
            if done and max(done) >= total:
                return
            logging.info("waiting for step %d of %s (evaluated: %s); next look in %d s",
                         total, self.workdir, max(done) if done else "none", poll_seconds)
            time.sleep(poll_seconds)
