"""What a sweep writes into its study directory once its trials are done.

  results.csv, results.md  every trial: number, state, objective value(s), parameters, wall time,
                           the directory of its run
  best.py                  one objective: the best trial's whole config, loadable as
                           `--config STUDY_DIR/best.py`
  front/trial_<n>.py       several objectives: one such config per trial on the Pareto front,
  front.md                 and the front as a table
  history.png              each trial's value and the best so far (one objective)
  importances.png          how much each parameter explains the objective (Optuna's default
                           importance evaluator), once two or more trials are complete
  pareto_front.png         two objectives: every complete trial, the front highlighted
"""
import json
import os
import warnings

import matplotlib

matplotlib.use("Agg")  # files only; no display on a server

import ml_collections  # noqa: E402
import optuna  # noqa: E402
from absl import logging  # noqa: E402
from matplotlib import pyplot as plt  # noqa: E402

from jaxgenre.core import outputs  # noqa: E402
from jaxgenre.sweep import space as space_lib  # noqa: E402


def write(study: optuna.Study, base: ml_collections.ConfigDict, study_dir: str) -> list[str]:
    """Writes the files above (those that apply) and returns their paths."""
    metrics = study.user_attrs.get("objectives", ["value"])
    trials = sorted(study.get_trials(deepcopy=False), key=lambda t: t.number)
    rows = [_row(t, metrics) for t in trials]
    columns = list(dict.fromkeys(k for row in rows for k in row))
    written = [_write_csv(os.path.join(study_dir, "results.csv"), rows, columns)]
    complete = [t for t in trials if t.state == optuna.trial.TrialState.COMPLETE]
    goals = ", ".join(f"{m} ({d.name.lower()})" for m, d in zip(metrics, study.directions))
    header = (f"# Sweep: {len(trials)} trials ({len(complete)} complete, "
              f"{sum(t.state == optuna.trial.TrialState.PRUNED for t in trials)} pruned, "
              f"{sum(t.state == optuna.trial.TrialState.FAIL for t in trials)} failed); "
              f"objective(s): {goals}\n\n")
    written.append(_write_md(os.path.join(study_dir, "results.md"), header, rows, columns))
    if not complete:
        return written
    if len(metrics) == 1:
        best = study.best_trial
        written.append(_write_config(os.path.join(study_dir, "best.py"), base, best, metrics))
        written += _plot(os.path.join(study_dir, "history.png"),
                         optuna.visualization.matplotlib.plot_optimization_history, study,
                         target_name=metrics[0])
    else:
        front = sorted(study.best_trials, key=lambda t: t.number)
        for trial in front:
            written.append(_write_config(os.path.join(study_dir, "front", f"trial_{trial.number}.py"),
                                         base, trial, metrics))
        written.append(_write_md(os.path.join(study_dir, "front.md"),
                                 f"# Pareto front: {len(front)} of {len(complete)} complete "
                                 "trials (config: front/trial_<n>.py)\n\n",
                                 [_row(t, metrics) for t in front], columns))
        if len(metrics) == 2:
            written += _plot(os.path.join(study_dir, "pareto_front.png"),
                             optuna.visualization.matplotlib.plot_pareto_front, study,
                             target_names=metrics)
    if len(complete) >= 2 and study.best_trials[0].params:
        written += _plot(os.path.join(study_dir, "importances.png"),
                         optuna.visualization.matplotlib.plot_param_importances, study,
                         **({"target": lambda t: t.values[0], "target_name": metrics[0]}
                            if len(metrics) > 1 else {"target_name": metrics[0]}))
    return written


def _row(trial: optuna.trial.FrozenTrial, metrics: list[str]) -> dict:
    row = {"trial": trial.number, "state": trial.state.name.lower()}
    values = trial.values or [None] * len(metrics)
    row.update({m: (None if v is None else round(v, 5)) for m, v in zip(metrics, values)})
    if trial.state == optuna.trial.TrialState.PRUNED and trial.intermediate_values:
        step = max(trial.intermediate_values)
        row[metrics[0]] = round(trial.intermediate_values[step], 5)
        row["pruned_at_step"] = step
    row.update({k: v for k, v in trial.params.items()})
    row["seconds"] = round(trial.duration.total_seconds()) if trial.duration else None
    row["resumes"] = trial.user_attrs.get("resumes")
    row["workdir"] = trial.user_attrs.get("workdir")
    return row


def _write_csv(path: str, rows: list[dict], columns: list[str]) -> str:
    import csv
    with outputs.replacing(path, "w", newline="") as f:
        writer = csv.DictWriter(f, columns)
        writer.writeheader()
        writer.writerows(rows)
    return path


def _write_md(path: str, header: str, rows: list[dict], columns: list[str]) -> str:
    def cell(v):
        return "" if v is None else (f"{v:.4g}" if isinstance(v, float) else str(v))
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(cell(row.get(c)) for c in columns) + " |" for row in rows]
    outputs.write_text(path, header + "\n".join(lines) + "\n")
    return path


def _write_config(path: str, base: ml_collections.ConfigDict, trial: optuna.trial.FrozenTrial,
                  metrics: list[str]) -> str:
    """A config file holding the trial's whole config: what its run saved (config.json), or
    the sweep's base with the trial's values where the run saved none."""
    saved = os.path.join(trial.user_attrs.get("workdir", ""), "config.json")
    if os.path.exists(saved):
        with open(saved) as f:
            config = ml_collections.ConfigDict(json.load(f))
    else:
        config = space_lib.apply(base, trial.params)
    values = ", ".join(f"{m} {v:.4f}" for m, v in zip(metrics, trial.values))
    text = (f'"""Trial {trial.number} of a jaxgenre sweep: {values} (validation).\n\n'
            f"  python -m jaxgenre.train --config {path} --workdir runs/x\n\n"
            f"Its parameters: {json.dumps(trial.params)}. Written by jaxgenre.sweep.\n"
            '"""\nimport json\n\nimport ml_collections\n\n'
            f"_CONFIG = r'''\n{config.to_json(indent=2)}\n'''\n\n\n"
            "def get_config(arg=None):\n"
            "    return ml_collections.ConfigDict(json.loads(_CONFIG))\n")
    os.makedirs(os.path.dirname(path), exist_ok=True)
    outputs.write_text(path, text)
    return path


def _plot(path: str, plot, study: optuna.Study, **kwargs) -> list[str]:
    """Optuna's matplotlib plot of `study` as a PNG; [] with a warning when it cannot be drawn
    (e.g. importances when every parameter took one value)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # Optuna's matplotlib plots are marked experimental
        try:
            axes = plot(study, **kwargs)
        except (ValueError, RuntimeError, ZeroDivisionError) as e:
            logging.warning("%s not drawn: %s", os.path.basename(path), e)
            return []
    figure = axes.figure if hasattr(axes, "figure") else axes.flat[0].figure
    figure.set_size_inches(8, 5)
    figure.tight_layout()
    with outputs.staged(path) as tmp:
        figure.savefig(tmp, dpi=100)
    plt.close(figure)
    return [path]
