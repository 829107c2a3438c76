r"""Searches a config's hyperparameters with Optuna: each trial a normal training run.

  python -m jaxgenre.sweep --config configs/stargan.py:demo --space configs/sweeps/stargan.py \
      --study_dir runs/sweep_st [--trials 20] [--timeout 2h] [--workers 1] [--storage URL] \
      [--objective val_target_accuracy:max,val_chroma_kept:max] [--pruner median|hyperband|none] \
      [--prune_after_steps 0] [--seed 0] [--start_from_config] [--config.KEY=VALUE ...]

--objective: scalars the config's evaluators report after each evaluation (default its
best_metric and best_mode), `:max` (default) or `:min`; two or more make a multi-objective study
whose result is the Pareto front. The sampler is TPE (MOTPE for several objectives); with one
objective the pruner stops trials worse than the median of earlier ones at the same step (or
Hyperband's successive halving). --trials counts finished trials (complete or pruned) in the
study: running the same command again continues it (after a crash, SIGKILL, SIGTERM or Ctrl-C,
the trial that was running is retried in its own directory and so resumes from its last
checkpoint). --workers K runs K worker processes here, sharing the study (on a GPU or TPU host
each would claim every device: there, run one command per device set, e.g. with
CUDA_VISIBLE_DEVICES); --storage postgresql://user:password@host/db (or mysql://, sqlite:///)
shares it with workers on other machines (each runs the same command).

Writes into --study_dir: journal.log (the study, without --storage), trials/<n>/ (trial n's
run: evaluate, predict, export read it), results.csv / results.md, best.py (or front/ and
front.md for several objectives) and PNG plots (`jaxgenre.sweep.results`).
"""
from jaxgenre.core import cli

# First of all: before TensorFlow and JAX start their threads and loggers.
cli.prepare_process(relaunch=__name__ == "__main__")

import ctypes
import os
import re
import signal
import subprocess
import sys

from absl import app, flags, logging

from jaxgenre import evaluators, tasks, train
from jaxgenre.core import errors
from jaxgenre.run import config_checks, config_versions, preemption

try:
    from jaxgenre.sweep import results
    from jaxgenre.sweep import space as space_lib
    from jaxgenre.sweep import study as study_lib
except ModuleNotFoundError as e:  # optuna, an optional dependency
    if e.name != "optuna":
        raise
    sys.exit("error: jaxgenre.sweep needs Optuna: pip install -e '.[sweep]' (or "
             "sh scripts/install.sh sweep).")

_STUDY_DIR = flags.DEFINE_string("study_dir", None, "The sweep's directory (created; the same "
                                 "one continues the sweep).", required=True)
_SPACE = flags.DEFINE_string("space", None, "The search space file (configs/sweeps/*.py).",
                             required=True)
_TRIALS = cli.integer_flag("trials", 20, "Finished trials (complete or pruned) to reach in the "
                           "study, over every worker and run of the command.", minimum=1)
_TIMEOUT = flags.DEFINE_string("timeout", None, "Stop starting trials after this long, e.g. "
                               "2h, 90m, 600s (default: no limit).")
_WORKERS = cli.integer_flag("workers", 1, "Worker processes on this machine.", minimum=1)
_STORAGE = flags.DEFINE_string("storage", None, "A database URL shared by workers on many "
                               "machines (default: a journal file in --study_dir).")
_OBJECTIVE = flags.DEFINE_string("objective", None, "metric[:max|:min][,metric...] (default: "
                                 "the config's best_metric and best_mode).")
_PRUNER = flags.DEFINE_enum("pruner", "median", study_lib.PRUNERS, "Stops hopeless trials early "
                            "(one objective only).")
_PRUNE_AFTER = cli.integer_flag("prune_after_steps", 0, "The median pruner stops no trial "
                                "before this step (raise it when validation is small and "
                                "noisy).", minimum=0)
_SEED = cli.integer_flag("seed", 0, "The sampler's seed (the same seed proposes the same "
                         "trials).", minimum=0)
_START = flags.DEFINE_bool("start_from_config", False, "A new study's first trial is the "
                           "config's own values of the space's keys (the hand-tuned point, "
                           "measured beside the search).")
_WORKER_INDEX = cli.integer_flag("worker_index", 0, "Internal: 1, 2 ... for the workers that "
                                 "--workers starts (they run trials and write no results).",
                                 minimum=0)

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhd]?)\s*$")


def parse_duration(text: str | None) -> float | None:
    """'2h' | '90m' | '600s' | '600' -> seconds; None stays None."""
    if text is None:
        return None
    match = _DURATION.match(text)
    if not match:
        raise app.UsageError(f"--timeout {text!r}: give a number with s, m, h or d, e.g. 2h.")
    return float(match.group(1)) * {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}[match.group(2)]


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
    cli.quiet_logs()
    study_lib.optuna.logging.set_verbosity(study_lib.optuna.logging.WARNING)  # ours: one line
    if flags.FLAGS.config is None:
        raise app.UsageError("--config is required, e.g. --config configs/mobilenet.py:demo.")
    # A config file saved before keys were added (an older study's best.py) as train reads it.
    base = config_versions.with_added_keys(flags.FLAGS.config)
    timeout = parse_duration(_TIMEOUT.value)
    # Everything checked before the first trial: the config, the space, the objective, the
    # storage.
    config_checks.validate(base)
    tasks.check_config(base)
    evaluators.check_config(base)
    space = space_lib.load(_SPACE.value)
    space_lib.check(space, base)
    start = space_lib.config_point(space, base) if _START.value else None
    objectives = study_lib.parse_objectives(
        _OBJECTIVE.value or f"{base.best_metric}:{base.best_mode}", base)
    if len(objectives) > 1 and _PRUNER.value != "none":
        logging.info("%d objectives: no pruning (Optuna prunes single-objective studies only).",
                     len(objectives))
    study_dir = os.path.abspath(_STUDY_DIR.value)
    os.makedirs(study_dir, exist_ok=True)
    store = study_lib.storage(_STORAGE.value, study_dir)
    worker = _WORKER_INDEX.value
    study = study_lib.open_study(store, objectives, _PRUNER.value, _SEED.value, worker,
                                 _PRUNE_AFTER.value, first=start)
    study_lib.recover_dead_trials(study)

    workers = []
    if worker:
        _die_with_parent()
    else:
        workers = [subprocess.Popen([sys.executable, "-m", "jaxgenre.sweep", *sys.argv[1:],
                                     "--workers=1", f"--worker_index={i}"])
                   for i in range(1, _WORKERS.value)]
    objective = study_lib.make_objective(base, space, objectives, study_dir, _train)
    try:
        study_lib.run_worker(study, objective, _TRIALS.value, timeout,
                             catch=(train.NonFiniteLossError,))
    except BaseException:
        for w in workers:  # SIGTERM, Ctrl-C, an error: the workers stop too (and save a step)
            w.terminate()
        raise
    finally:
        failed = [w.wait() for w in workers]
    if worker:
        return
    if any(failed):
        logging.warning("%d worker(s) ended with an error (exit %s); see their output above.",
                        sum(map(bool, failed)), failed)
    for path in results.write(study, base, study_dir):
        print(f"wrote {path}")
    _print_best(study, objectives)


def _train(config, workdir, on_evaluation):
    """train_and_evaluate; SIGTERM (its step saved) or Ctrl-C end the command with the trial
    left running in the study, so that the next run of the command finds its process gone and
    retries it in the same directory, resuming the checkpoint. (Optuna would mark a trial that
    raised KeyboardInterrupt failed, and a failed trial is not retried.)"""
    try:
        return train.train_and_evaluate(config, workdir, on_evaluation)
    except preemption.Preempted as e:
        logging.warning("%s", e)
        sys.exit(preemption.EXIT_CODE)
    except KeyboardInterrupt:
        sys.exit(130)


def _print_best(study, objectives) -> None:
    complete = [t for t in study.trials if t.state == study_lib.optuna.trial.TrialState.COMPLETE]
    if not complete:
        print("No trial completed.")
    elif len(objectives) == 1:
        best = study.best_trial
        print(f"best: trial {best.number}, {objectives[0].metric}={best.value:.4f}, "
              f"{best.params} (config: {os.path.join(_STUDY_DIR.value, 'best.py')})")
    else:
        print(f"Pareto front: trials {sorted(t.number for t in study.best_trials)} of "
              f"{len(complete)} complete (configs in {os.path.join(_STUDY_DIR.value, 'front')})")


def _die_with_parent() -> None:
    """A worker ends with the command that started it (Linux: prctl PR_SET_PDEATHSIG), so a
    killed sweep leaves no workers behind and its next run starts a fresh set."""
    if sys.platform.startswith("linux"):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # 1: PR_SET_PDEATHSIG
        if os.getppid() == 1:  # the command died before the line above ran
            sys.exit(1)


def entry_point() -> None:
    """Parses the flags and runs `main` (the `python -m jaxgenre.sweep` entry point)."""
    cli.run(main, flags_parser=config_checks.parse_flags, sigterm_unwinds=False,
            user_errors=(errors.UserError, ValueError))


if __name__ == "__main__":
    entry_point()
