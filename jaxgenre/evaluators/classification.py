"""Whole-clip classification metrics, shared by the trainer (validation) and `jaxgenre.evaluate`;
`CheckpointEvaluator` restores a run's checkpoints on this process's devices and runs the run's
configured evaluators on them.

Each clip is cut into crops that cover it; its logits are the mean over crops, for single- and
multi-label models alike (a multi-label clip's genre probabilities are the sigmoid of that
mean). Metrics are computed on host from every process's predictions, padding and clips without
a label masked out.
"""
import json

import jax
import numpy as np
from etils import epath
from jax.experimental import multihost_utils
from scipy import special
from sklearn import metrics as skm

from jaxgenre import tasks
from jaxgenre.core import outputs, sharding
from jaxgenre.data import input_pipeline

# The headline metrics of a classification evaluator by config.data.label: logged as
# '<evals name>_<metric>', what config.best_metric can name.
SCALARS = {"genre_top": ("accuracy", "balanced_accuracy", "top3_accuracy", "loss"),
           "genres": ("map", "roc_auc_macro", "roc_auc_micro", "precision_at_1", "loss")}


class ClassificationEvaluator:
    """Genre scores of a classifier state on one split (config.evals type 'classification'):
    accuracy and the like of a single-label model, mAP and ROC-AUC of a multi-label one.

    Args:
      task: a `classifier.ClassifierTask` (its `predict`: (state, {audio int16 [B, crops, N]})
        -> (clip logits [B, C], features [B, D]) float32).
      state_sharding: the state's shardings (the predict step is jitted with them).
      builder, split, batch_size (clips, global), mesh: where the clips come from.
      label: config.data.label, 'genre_top' (`classification_metrics`) or 'genres'
        (`multilabel_metrics`).
    """

    def __init__(self, task: tasks.GenreClassifier, state_sharding, builder, split: str,
                 batch_size: int, mesh, label: str = "genre_top"):
        self.builder, self.split, self.batch_size, self.mesh = builder, split, batch_size, mesh
        self.label = label
        self.crop_samples = task.data.crop_samples
        self.class_names = list(task.data.class_names)
        data = sharding.batch_sharding(mesh)
        self.predict_fn = jax.jit(lambda state, batch: task.predict(state, batch)[0],
                                  in_shardings=(state_sharding, {"audio": data}),
                                  out_shardings=data)

    def predict(self, state) -> tuple[np.ndarray, np.ndarray]:
        """(logits [N, C] float32, labels int32 [N] or multi-hot [N, C]) of every labelled clip
        of the split, once."""
        logits, labels = [], []
        for batch in input_pipeline.eval_batches(self.builder, self.split, self.batch_size,
                                                 self.crop_samples, self.mesh, self.label):
            out = self.predict_fn(state, {"audio": batch["audio"]})
            out, label, mask = multihost_utils.process_allgather(
                (out, batch["label"], batch["mask"]), tiled=True)
            logits.append(out[mask])
            labels.append(label[mask])
        return np.concatenate(logits), np.concatenate(labels)

    def run(self, state) -> dict:
        metrics = multilabel_metrics if self.label == "genres" else classification_metrics
        return metrics(*self.predict(state), self.class_names)

    def scalars(self, result: dict) -> dict[str, float]:
        return {k: result[k] for k in SCALARS[self.label]}

    def summarise(self, writer, step: int, result: dict) -> None:
        """Nothing beyond the scalars."""

    def table(self, result: dict) -> str:
        return format_multilabel_table(result) if self.label == "genres" else format_table(result)

    def write(self, result: dict, out_dir: str) -> list[str]:
        """`<split>_<step>.json`, and for a single-label model a confusion-matrix PNG."""
        name = f"{self.split}_{result['step']}"
        if self.label == "genres":
            return [write_json(result, out_dir, name)]
        return list(write_report(result, out_dir, name))


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


def multilabel_metrics(logits: np.ndarray, labels: np.ndarray, class_names) -> dict:
    """Multi-label scores of clip logits [N, C] float32 against multi-hot labels [N, C] 0/1.

    The scores are sigmoid probabilities. A genre's AP and ROC-AUC need clips with it and clips
    without it; a genre that lacks either in the split (where sklearn warns and scores AP 0 or
    ROC-AUC NaN) gets null for both, is listed in `undefined_genres` and is left out of the
    macro averages. The micro ROC-AUC pools every (clip, genre) pair, such genres' included
    (NaN if the pooled labels are all 0 or all 1, as in a split of one clip).

    Returns: map (mean AP over genres), roc_auc_macro, roc_auc_micro, precision_at_1 (the share
    of clips whose top genre is one of theirs), loss (sigmoid cross-entropy, mean over clips and
    genres), per_genre {name: {ap, roc_auc, support: clips with it}}, undefined_genres,
    num_examples.
    """
    labels = np.asarray(labels, np.int32)
    logits = np.asarray(logits, np.float64)
    probs = special.expit(logits)
    support = labels.sum(0)
    defined = (support > 0) & (support < len(labels))
    ap = [float(skm.average_precision_score(labels[:, i], probs[:, i])) if ok else None
          for i, ok in enumerate(defined)]
    auc = [float(skm.roc_auc_score(labels[:, i], probs[:, i])) if ok else None
           for i, ok in enumerate(defined)]
    top = logits.argmax(-1)
    pooled = np.unique(labels)
    return {
        "map": _mean_defined(ap),
        "roc_auc_macro": _mean_defined(auc),
        "roc_auc_micro": (float(skm.roc_auc_score(labels.ravel(), probs.ravel()))
                          if len(pooled) == 2 else float("nan")),
        "precision_at_1": float(np.mean(labels[np.arange(len(labels)), top])),
        "loss": float(np.mean(np.logaddexp(0.0, logits) - logits * labels)),
        "per_genre": {name: {"ap": ap[i], "roc_auc": auc[i], "support": int(support[i])}
                      for i, name in enumerate(class_names)},
        "undefined_genres": [name for name, ok in zip(class_names, defined) if not ok],
        "num_examples": len(labels),
    }


def _mean_defined(values: list) -> float:
    """The mean of the values that are not None; NaN when none is."""
    defined = [v for v in values if v is not None]
    return float(np.mean(defined)) if defined else float("nan")


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


def format_multilabel_table(result: dict) -> str:
    """Per-genre AP and ROC-AUC ('-' where undefined), then the headline numbers, mAP last."""
    def score(v):
        return f"{'-' if v is None else f'{v:.3f}':>10}"

    rows = [f"{'genre':<22}{'AP':>10}{'ROC-AUC':>10}{'clips':>8}"]
    for name, m in result["per_genre"].items():
        rows.append(f"{name:<22}{score(m['ap'])}{score(m['roc_auc'])}{m['support']:>8d}")
    rows.append(f"clips: {result['num_examples']}   step: {result.get('step', '-')}")
    if result["undefined_genres"]:
        rows.append("left out of the macro averages (no clip with the genre, or none without): "
                    + ", ".join(result["undefined_genres"]))
    rows += [f"precision at 1: {result['precision_at_1']:.4f}",
             f"ROC-AUC micro:  {result['roc_auc_micro']:.4f}",
             f"ROC-AUC macro:  {result['roc_auc_macro']:.4f}",
             f"mAP:            {result['map']:.4f}"]
    return "\n".join(rows)


def write_json(result: dict, out_dir: str, name: str) -> str:
    """Writes `<out_dir>/<name>.json`; returns its path."""
    path = epath.Path(out_dir) / f"{name}.json"
    outputs.write_text(path, json.dumps(result, indent=2))
    return str(path)


def write_report(result: dict, out_dir: str, name: str) -> tuple[str, str]:
    """Writes `<out_dir>/<name>.json` and a confusion-matrix `<name>.png`; returns both paths."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    json_path = write_json(result, out_dir, name)
    png_path = epath.Path(out_dir) / f"{name}.png"
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
    with outputs.replacing(png_path, "wb") as f:
        fig.savefig(f, format="png", dpi=120)
    plt.close(fig)
    return json_path, str(png_path)

