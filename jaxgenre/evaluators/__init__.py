"""Evaluators chosen by the config, run by the trainer and by `jaxgenre.evaluate` alike.

`config.evals` maps a name to an entry with a `type` (and a `split`, plus the type's options):

  c.evals.val = dict(type="classification", split="validation")

The trainer writes each result's scalars as `<name>_<metric>` (e.g. `val_accuracy`, what
`config.best_metric` names) and calls `summarise` for images or audio; `jaxgenre.evaluate` runs
the same entries on the split it is asked for, prints `table` and calls `write`.

Types:
  classification   genre accuracy of a classifier, or mAP and ROC-AUC of a multi-label one
                   (config.data.label 'genres'; `classification.ClassificationEvaluator`)
  transfer_proxy   judge-free style-transfer scores of a generator on validation clips, with
                   spectrogram and audio summaries (`transfer_proxy.ProxyEvaluator`)
"""
from typing import Protocol

import jax
import ml_collections

from jaxgenre.evaluators import classification, transfer_proxy
from jaxgenre.run import config_checks


class Evaluator(Protocol):
    split: str

    def run(self, state) -> dict:
        """Evaluates a state; the result is JSON-serialisable."""

    def scalars(self, result: dict) -> dict[str, float]:
        """The headline numbers, logged and compared for the best checkpoint."""

    def summarise(self, writer, step: int, result: dict) -> None:
        """TensorBoard extras (images, audio) beyond the scalars."""

    def table(self, result: dict) -> str:
        """The result as text for the console (printed before anything is written)."""

    def write(self, result: dict, out_dir: str) -> list[str]:
        """Writes report files under `out_dir`; returns their paths."""


def _classification(entry, config, task, state_sharding, builder, mesh, split):
    return classification.ClassificationEvaluator(task, state_sharding, builder, split,
                                              config.eval_batch_size, mesh,
                                              config.data.label)


def _transfer_proxy(entry, config, task, state_sharding, builder, mesh, split):
    return transfer_proxy.ProxyEvaluator(task, state_sharding, builder, split,
                                         config.eval_batch_size, mesh, clips=entry.get("clips"),
                                         classifier_workdir=entry.get("classifier_workdir"),
                                         num_samples=entry.get("num_samples", 2))


_TYPES = {"classification": _classification, "transfer_proxy": _transfer_proxy}


def check_config(config: ml_collections.ConfigDict) -> None:
    """Refuses `config.evals` entries of unknown types or splits, and a `best_metric` that no
    evaluator reports, listing the valid ones."""
    config_checks.check_choices(
        {f"evals.{name}.{key}": (value, valid) for name, entry in config.evals.items()
         for key, value, valid in (("type", entry.type, tuple(_TYPES)),
                                   ("split", entry.split, ("validation", "test", "train")))})
    _check_best_metric(config)


def scalar_names(config: ml_collections.ConfigDict) -> list[str]:
    """Every scalar the trainer logs after an evaluation with `config`: `<name>_<metric>` for
    each entry of `config.evals` (what `best_metric` and a sweep's objectives may name)."""
    per_type = {"classification": classification.SCALARS[config.data.label],
                "transfer_proxy": transfer_proxy.SCALARS}
    return [f"{name}_{metric}" for name, entry in config.evals.items()
            for metric in per_type.get(entry.type, ())]


def _check_best_metric(config: ml_collections.ConfigDict) -> None:
    """A best_metric of a classification evaluator must be one it reports for `label`:
    otherwise the run fails at its first checkpoint with an evaluation."""
    for name, entry in config.evals.items():
        if entry.type != "classification" or not config.best_metric.startswith(name + "_"):
            continue
        valid = [f"{name}_{m}" for m in classification.SCALARS[config.data.label]]
        if config.best_metric not in valid:
            raise ValueError(
                f"best_metric {config.best_metric!r} is not reported with data.label={config.data.label!r}; "
                f"valid: {', '.join(valid)}. (The config argument 'multilabel' sets data.label "
                f"'genres' with best_metric '{name}_map'.)")


def create(config: ml_collections.ConfigDict, task, state_sharding, builder,
           mesh: jax.sharding.Mesh, split: str | None = None) -> dict[str, Evaluator]:
    """{name: evaluator} for every entry of `config.evals`; `split` overrides each entry's."""
    out = {}
    for name, entry in config.evals.items():
        if entry.type not in _TYPES:
            raise ValueError(f"Unknown evals.{name}.type {entry.type!r}; valid: "
                             f"{', '.join(_TYPES)}.")
        out[name] = _TYPES[entry.type](entry, config, task, state_sharding, builder, mesh,
                                       split or entry.split)
    return out
