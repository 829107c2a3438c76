"""Whole-clip evaluation, shared by the trainer (validation) and `jaxgenre.evaluate`;
`CheckpointEvaluator` restores a run's checkpoints on this process's devices and evaluates them.

Each clip is cut into crops that cover it; its logits are the mean over crops. Metrics are
computed on host from every process's predictions, padding masked out.
"""
import json
import time

import jax
import ml_collections
import numpy as np
from absl import logging
from etils import epath
from jax.experimental import multihost_utils
from sklearn import metrics as skm

from jaxgenre import checkpointing, classifier, input_pipeline, optim, sharding


class Evaluator:
    """Evaluates a `TrainState` on one split.

    Args:
      predict_fn: jitted (state, batch) -> clip logits [B, C] float32.
      builder, split, batch_size (clips, global), crop_samples, mesh: where the clips come from.
      class_names: the C genre names, in label order.
    """

    def __init__(self, predict_fn, builder, split: str, batch_size: int, crop_samples: int,
                 mesh, class_names):
        self.predict_fn = predict_fn
        self.builder, self.split = builder, split
        self.batch_size, self.crop_samples, self.mesh = batch_size, crop_samples, mesh
        self.class_names = list(class_names)

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


def load_run_config(workdir: str) -> ml_collections.ConfigDict:
    path = epath.Path(workdir) / "config.json"
    if not path.exists():
        raise FileNotFoundError(f"{path} not found: is {workdir} a jaxgenre.train --workdir?")
    return ml_collections.ConfigDict(json.loads(path.read_text()))


class CheckpointEvaluator:
    """Restores checkpoints of one run onto this process's devices and evaluates them."""

    def __init__(self, workdir: str, split: str, data_dir: str | None = None):
        self.workdir, self.split = workdir, split
        config = load_run_config(workdir)
        if data_dir:
            config.data.data_dir = data_dir
        self.config = config
        self.mesh = sharding.make_mesh()
        builder = input_pipeline.load_builder(config.data.name, config.data.data_dir,
                                              config.data.manual_dir)
        features = builder.info.features
        class_names = features["label"].names
        sample_rate = features["audio"].sample_rate
        mel = classifier.mel_config(config, sample_rate)
        tx = optim.make(config.optim, config.total_steps)
        _, shapes, shardings = classifier.abstract_state(config, len(class_names), tx, self.mesh)
        self.target = checkpointing.abstract_with_shardings(shapes, shardings)
        graphdef = classifier.model_graph(config, len(class_names))
        predict = classifier.jit_predict(config, graphdef, mel, self.mesh, shardings)
        crop = round(config.data.crop_seconds * sample_rate)
        self.evaluator = Evaluator(predict, builder, split, config.eval_batch_size,
                                              crop, self.mesh, class_names)
        self.mngr = checkpointing.manager(workdir, read_only=True)

    def evaluate(self, which: str) -> dict:
        self.mngr.reload()
        step = checkpointing.resolve_step(self.mngr, which)
        state = checkpointing.restore(self.mngr, step, self.target)
        result = self.evaluator.run(state)
        result.update(step=step, split=self.split, checkpoint=which, model=self.config.model.name,
                      dataset=self.config.data.name)
        if jax.process_index() == 0:
            paths = write_report(result, str(epath.Path(self.workdir) / "eval"),
                                            f"{self.split}_{step}")
            print(format_table(result), flush=True)
            logging.info("wrote %s", ", ".join(paths))
        return result

    def watch(self, poll_seconds: int) -> None:
        done = set()
        while self.config.total_steps not in done:
            self.mngr.reload()
            for step in sorted(set(self.mngr.all_steps()) - done):
                self.evaluate(str(step))
                done.add(step)
            if self.config.total_steps not in done:
                time.sleep(poll_seconds)
