"""An Optuna study over training runs: its storage, the objective (one `jaxgenre.train` run per
trial), recovery of trials whose worker died, and one worker's loop.

Trial n trains in `study_dir/trials/<n>` (a normal run: resumable, and every CLI reads it).
After each evaluation the trial reports the objective to Optuna, and a single-objective study's
pruner may stop it there (its checkpoints kept). The trial's value(s) are those of its last
evaluation. A trial whose worker died (SIGKILL, a lost machine) is marked failed and retried
with the same parameters in the same directory, so the retry resumes from its last checkpoint;
`resumes` in the retry's user attributes names the trial it continues.
"""
import dataclasses
import os
import socket
import warnings
from collections.abc import Callable

import ml_collections
import optuna
from absl import logging

from jaxgenre import evaluators
from jaxgenre.core import errors
from jaxgenre.sweep import space as space_lib

TRIALS_DIR = "trials"
JOURNAL_FILE = "journal.log"
STUDY_NAME = "jaxgenre"
PRUNERS = ("median", "hyperband", "none")
FINISHED = (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED)


class SweepError(errors.UserError, ValueError):
    """The sweep cannot start as asked: the message names the problem and the fix."""


@dataclasses.dataclass(frozen=True)
class Objective:
    """A scalar the trainer logs after each evaluation (e.g. val_accuracy) and its direction."""
    metric: str
    direction: str  # 'maximize' | 'minimize'


def parse_objectives(spec: str, config: ml_collections.ConfigDict) -> list[Objective]:
    """'val_accuracy' or 'val_target_accuracy:max,val_chroma_kept:max' -> Objectives; refuses a
    metric no configured evaluator reports, listing those that do."""
    reported = evaluators.scalar_names(config)
    out = []
    for part in (p.strip() for p in spec.split(",") if p.strip()):
        metric, _, way = part.partition(":")
        direction = {"": "maximize", "max": "maximize", "min": "minimize"}.get(way)
        if direction is None:
            raise SweepError(f"--objective {part!r}: the direction after ':' must be max or min.")
        if metric not in reported:
            raise SweepError(f"--objective {metric!r} is not reported by the config's evaluators "
                             f"({', '.join(config.evals)}); they report: {', '.join(reported)}.")
        out.append(Objective(metric, direction))
    if not out:
        raise SweepError("--objective is empty: name a metric, e.g. val_accuracy.")
    return out


def storage(url: str | None, study_dir: str):
    """The study's storage: a journal file in `study_dir` (local worker processes share it), or
    a database URL (postgresql://, mysql://, sqlite:///) for workers on many machines, with a
    heartbeat so that a dead machine's trial is failed and retried. Refuses a database it cannot
    reach."""
    if url is None:
        backend = optuna.storages.journal.JournalFileBackend(os.path.join(study_dir,
                                                                          JOURNAL_FILE))
        return optuna.storages.JournalStorage(backend)
    try:
        return optuna.storages.RDBStorage(
            url, engine_kwargs={"pool_pre_ping": True}, heartbeat_interval=60,
            grace_period=180, failed_trial_callback=retry)
    except Exception as e:  # noqa: BLE001  (SQLAlchemy and the drivers raise many kinds)
        message = " ".join(str(e).split())[:300]
        raise SweepError(f"--storage {_hide_password(url)} cannot be used: {message}. Check the "
                         "server is up, the database exists and the driver is installed "
                         "(pip install 'psycopg[binary]' for PostgreSQL).") from None


def _hide_password(url: str) -> str:
    scheme, sep, rest = url.partition("://")
    if "@" in rest and ":" in rest.split("@", 1)[0]:
        user = rest.split("@", 1)[0].split(":", 1)[0]
        return f"{scheme}{sep}{user}:***@{rest.split('@', 1)[1]}"
    return url


def open_study(store, objectives: list[Objective], pruner: str, seed: int | None,
               worker: int = 0, warmup_steps: int = 0, first: dict | None = None
               ) -> optuna.Study:
    """Creates the study or loads it (the same command continues it); `first` {key: value}
    is queued as trial 0 by the one process that creates the study (creation is atomic in
    every storage, so commands started together on many machines queue it once).

    TPE (multivariate; with several objectives Optuna's TPE is MOTPE, which suits budgets of
    tens of trials better than NSGA-II's generations of 50); the pruner only applies to one
    objective (Optuna prunes single-objective studies only). The sampler's seed is `seed` plus
    the trials already in the study and 1000 x `worker`: a fresh single-worker study repeats
    itself exactly, while workers, and later runs of the command, do not propose each other's
    trials. The median pruner stops no trial before `warmup_steps` (noisy small validation sets
    want some)."""
    directions = [o.direction for o in objectives]
    pruners = {"median": lambda: optuna.pruners.MedianPruner(n_startup_trials=2,
                                                             n_warmup_steps=warmup_steps),
               "hyperband": lambda: optuna.pruners.HyperbandPruner(),
               "none": optuna.pruners.NopPruner}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        try:
            study = optuna.create_study(storage=store, study_name=STUDY_NAME,
                                        pruner=pruners[pruner](), directions=directions)
            if first is not None:
                study.enqueue_trial(first)
        except optuna.exceptions.DuplicatedStudyError:  # made before, or by another command
            study = optuna.load_study(storage=store, study_name=STUDY_NAME,
                                      pruner=pruners[pruner]())
    metrics = [o.metric for o in objectives]
    saved = study.user_attrs.get("objectives")
    if saved is not None and (saved != metrics
                              or [d.name.lower() for d in study.directions] != directions):
        raise SweepError(f"The study in this --study_dir optimises {', '.join(saved)} "
                         f"({', '.join(d.name.lower() for d in study.directions)}); pass that "
                         "--objective, or a new --study_dir.")
    study.set_user_attr("objectives", metrics)
    if seed is not None:
        seed += len(study.get_trials(deepcopy=False)) + 1000 * worker
    study.sampler = optuna.samplers.TPESampler(seed=seed, multivariate=True, n_startup_trials=5)
    return study


def retry(study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
    """Queues trial `trial` (failed because its worker died) again with the same parameters, in
    the same directory: the retry resumes its run from the last checkpoint."""
    resumes = trial.user_attrs.get("resumes", trial.number)
    study.enqueue_trial(trial.params, user_attrs={"resumes": resumes})
    logging.warning("Trial %d's worker is gone: retried in %s, resuming its last checkpoint.",
                    trial.number, os.path.join(TRIALS_DIR, str(resumes)))


def recover_dead_trials(study: optuna.Study) -> list[int]:
    """Fails and retries the running trials of dead worker processes of this machine (their
    `worker` attribute host:pid; workers elsewhere are left to the database's heartbeat).
    Setting the state is atomic, so two workers starting together retry a trial once."""
    host, recovered = socket.gethostname(), []
    for trial in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,)):
        owner_host, _, pid = trial.user_attrs.get("worker", "").rpartition(":")
        if owner_host != host or not pid.isdigit() or _alive(int(pid)):
            continue
        try:
            study._storage.set_trial_state_values(trial._trial_id,
                                                  optuna.trial.TrialState.FAIL)
        except RuntimeError:  # another worker recovered it first (UpdateFinishedTrialError)
            continue
        retry(study, trial)
        recovered.append(trial.number)
    return recovered


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process: alive
        return True
    return True


def make_objective(base: ml_collections.ConfigDict, space: dict, objectives: list[Objective],
                   study_dir: str, train: Callable) -> Callable:
    """The function Optuna calls per trial: the trial's config (the space's suggestions on
    `base`), `train(config, workdir, on_evaluation)` in its directory, the objective(s)."""
    def objective(trial: optuna.Trial):
        trial.set_user_attr("worker", f"{socket.gethostname()}:{os.getpid()}")
        values = space_lib.suggest(trial, space, base)
        config = space_lib.apply(base, values)
        resumes = trial.user_attrs.get("resumes", trial.number)
        workdir = trial_dir(study_dir, resumes)
        trial.set_user_attr("workdir", workdir)

        def on_evaluation(step: int, scalars: dict) -> None:
            # kept in the study: a retry of a run that had finished trains and evaluates nothing
            trial.set_user_attr("last_evaluation",
                                {"step": step, **{k: float(v) for k, v in scalars.items()}})
            if len(objectives) == 1:
                trial.report(scalars[objectives[0].metric], step)
                if trial.should_prune():
                    raise optuna.TrialPruned(f"pruned at step {step}: "
                                             f"{objectives[0].metric}={scalars[objectives[0].metric]:.4f}")

        os.makedirs(workdir, exist_ok=True)
        scalars = train(config, workdir, on_evaluation) or _last_evaluation(trial.study, resumes)
        missing = [o.metric for o in objectives if o.metric not in scalars]
        if missing:
            raise SweepError(f"Trial {trial.number} ended without {', '.join(missing)}: its run "
                             f"in {workdir} made no evaluation (eval_every_steps > total_steps?).")
        values = [float(scalars[o.metric]) for o in objectives]
        return values[0] if len(values) == 1 else values

    return objective


def _last_evaluation(study: optuna.Study, resumes: int) -> dict:
    """The last evaluation logged by the trials that trained the run of trial `resumes`."""
    logged = [t.user_attrs["last_evaluation"] for t in study.get_trials(deepcopy=False)
              if (t.number == resumes or t.user_attrs.get("resumes") == resumes)
              and "last_evaluation" in t.user_attrs]
    return max(logged, key=lambda e: e["step"], default={})


def trial_dir(study_dir: str, number: int) -> str:
    return os.path.join(study_dir, TRIALS_DIR, str(number))


def run_worker(study: optuna.Study, objective: Callable, trials: int, timeout: float | None,
               catch: tuple[type[Exception], ...] = ()) -> None:
    """Runs trials until the study holds `trials` finished (complete or pruned) ones, counted
    over every worker and every earlier run of the command, or `timeout` seconds pass. A trial
    raising one of `catch` (a NaN loss) is marked failed and the worker goes on."""
    def report(study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
        seconds = (trial.duration.total_seconds() if trial.duration else float("nan"))
        value = ("" if trial.values is None else
                 " " + ", ".join(f"{m}={v:.4f}" for m, v in
                                 zip(study.user_attrs.get("objectives", []), trial.values)))
        params = ", ".join(f"{k}={_short(v)}" for k, v in trial.params.items())
        print(f"trial {trial.number} {trial.state.name.lower()}{value} in {seconds:.0f} s "
              f"({params})", flush=True)

    done = len(study.get_trials(deepcopy=False, states=FINISHED))
    if done >= trials:
        return
    study.optimize(objective, timeout=timeout, gc_after_trial=True, catch=catch,
                   callbacks=[optuna.study.MaxTrialsCallback(trials, states=FINISHED), report,
                              lambda study, _: recover_dead_trials(study)])


def _short(value) -> str:
    return f"{value:.3g}" if isinstance(value, float) else str(value)
