"""`python -m jaxgenre.sweep` as users run it, on the tiny classifier: a seeded sweep that prunes,
two workers sharing one journal, SIGKILL mid-trial and the same command resuming, the study on
a real PostgreSQL server started here, and every bad input refused before a trial runs.

The `sweep` tier (`-m sweep`): each sweep is a real process training real (tiny) runs.
"""
import csv
import glob
import os
import pathlib
import pwd
import shutil
import signal
import subprocess
import sys
import tempfile
import time

import pytest

from tests import train_helpers as th

pytestmark = pytest.mark.sweep
# Each sweep process trains on one CPU device.
ENV = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=1")

SPACE = '''from jaxgenre.sweep.space import choice, log_uniform

def get_space():
    return {"optim.learning_rate": log_uniform(1e-6, 1e-2),
            "augment.mixup_alpha": choice([0.0, 0.4])}
'''


def _space(tmp_path, text: str = SPACE) -> str:
    path = tmp_path / "space.py"
    path.write_text(text)
    return str(path)


def _argv(tiny_fma, study_dir, space: str, *extra, **overrides) -> list[str]:
    values = th.overrides(tiny_fma[0], **{"eval_every_steps": 2, **overrides})
    return [sys.executable, "-m", "jaxgenre.sweep", "--config", "configs/mfcc_cnn.py:demo",
            "--space", space, "--study_dir", str(study_dir),
            *[f"--config.{k}={v}" for k, v in values.items()], *extra]


def _run(argv, timeout=600, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run(argv, cwd=th.ROOT, env=ENV, capture_output=True, text=True,
                          timeout=timeout, check=False, **kwargs)


def _results(study_dir) -> list[dict]:
    with open(os.path.join(study_dir, "results.csv"), newline="") as f:
        return list(csv.DictReader(f))


def test_a_seeded_sweep_prunes_hopeless_trials_and_writes_its_results(tiny_fma, tmp_path):
    study = tmp_path / "study"
    proc = _run(_argv(tiny_fma, study, _space(tmp_path), "--trials", "4", "--seed", "0",
                      "--objective", "val_loss:min"))
    assert proc.returncode == 0, proc.stderr[-3000:]
    rows = _results(study)
    states = [r["state"] for r in rows]
    assert len(rows) == 4 and set(states) <= {"complete", "pruned"} and "pruned" in states, rows
    # one progress line per finished trial, and the pruned one names its step
    lines = [line for line in proc.stdout.splitlines() if line.startswith("trial ")]
    assert len(lines) == 4 and any(" pruned val_loss=" in line for line in lines), proc.stdout
    best = min((r for r in rows if r["state"] == "complete"), key=lambda r: float(r["val_loss"]))
    text = (study / "best.py").read_text()
    assert f"Trial {best['trial']} of a jaxgenre sweep" in text
    from jaxgenre.run import config_checks
    config = config_checks._load_config_file(str(study / "best.py"))
    assert config.optim.learning_rate == pytest.approx(float(best["optim.learning_rate"]))
    assert config.total_steps == 6 and config.model.name == "mfcc_cnn"
    for name in ("results.md", "history.png", "importances.png"):
        assert (study / name).stat().st_size > 100, name
    # each trial is a normal run: its config and checkpoints in trials/<n>
    for r in rows:
        assert os.path.exists(os.path.join(r["workdir"], "config.json")), r
    # the same command again: the study already has 4 finished trials, so nothing more runs
    again = _run(_argv(tiny_fma, study, _space(tmp_path), "--trials", "4", "--seed", "0",
                       "--objective", "val_loss:min"))
    assert again.returncode == 0 and len(_results(study)) == 4, again.stderr[-3000:]


def test_two_objectives_give_the_pareto_front_with_a_config_per_point(tiny_fma, tmp_path):
    study = tmp_path / "study"
    proc = _run(_argv(tiny_fma, study, _space(tmp_path), "--trials", "3",
                      "--objective", "val_accuracy:max,val_loss:min", "--start_from_config",
                      "--config.augment.mixup_alpha=0.4", "--config.optim.learning_rate=0.003"))
    assert proc.returncode == 0, proc.stderr[-3000:]
    rows = [r for r in _results(study) if r["state"] == "complete"]
    assert len(rows) == 3
    first = next(r for r in rows if r["trial"] == "0")  # --start_from_config: the config's point
    assert (float(first["optim.learning_rate"]), float(first["augment.mixup_alpha"])) == \
        (0.003, 0.4)
    points = {int(r["trial"]): (float(r["val_accuracy"]), float(r["val_loss"])) for r in rows}

    def dominated(n):
        a, loss = points[n]
        return any(b >= a and m <= loss and (b, m) != (a, loss) for b, m in points.values())

    front = sorted(int(p.stem.split("_")[1]) for p in (study / "front").glob("trial_*.py"))
    assert front and front == sorted(n for n in points if not dominated(n)), (front, points)
    from jaxgenre.run import config_checks
    for n in front:
        config = config_checks._load_config_file(str(study / "front" / f"trial_{n}.py"))
        row = next(r for r in rows if int(r["trial"]) == n)
        assert config.optim.learning_rate == pytest.approx(float(row["optim.learning_rate"]))
    assert (study / "pareto_front.png").stat().st_size > 100
    assert "Pareto front" in (study / "front.md").read_text()


def test_two_workers_share_one_journal_and_run_no_trial_twice(tiny_fma, tmp_path):
    study = tmp_path / "study"
    proc = _run(_argv(tiny_fma, study, _space(tmp_path), "--trials", "4", "--workers", "2",
                      "--pruner", "none"))
    assert proc.returncode == 0, proc.stderr[-3000:]
    rows = _results(study)
    numbers = [int(r["trial"]) for r in rows]
    assert len(numbers) == len(set(numbers)) and len({r["workdir"] for r in rows}) == len(rows)
    assert sum(r["state"] == "complete" for r in rows) >= 4
    import optuna
    loaded = optuna.load_study(study_name="jaxgenre", storage=optuna.storages.JournalStorage(
        optuna.storages.journal.JournalFileBackend(str(study / "journal.log"))))
    workers = {t.user_attrs["worker"] for t in loaded.trials}
    assert len(workers) == 2, workers  # both processes ran trials


def test_sigkill_mid_trial_then_the_same_command_resumes_it(tiny_fma, tmp_path):
    """The killed trial is retried in its own directory, so its run resumes from the last
    checkpoint instead of starting over; finished trials are kept."""
    study = tmp_path / "study"
    argv = _argv(tiny_fma, study, _space(tmp_path), "--trials", "2", "--pruner", "none",
                 total_steps=30, eval_every_steps=10, checkpoint_every_steps=2)
    with open(tmp_path / "killed.log", "w") as log:
        proc = subprocess.Popen(argv, cwd=th.ROOT, env=ENV, stdout=log, stderr=subprocess.STDOUT,
                                start_new_session=True)
        checkpoints = study / "trials" / "0" / "checkpoints"
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline and not any(
                p.name.isdigit() and int(p.name) >= 4 for p in checkpoints.glob("*")):
            assert proc.poll() is None, (tmp_path / "killed.log").read_text()[-3000:]
            time.sleep(0.2)
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=60)
    saved = max(int(p.name) for p in checkpoints.glob("*") if p.name.isdigit())
    assert 4 <= saved < 30

    resumed = _run(argv)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    rows = _results(study)
    numbers = [int(r["trial"]) for r in rows]
    assert len(numbers) == len(set(numbers))
    assert rows[0]["state"] == "fail"
    retry = [r for r in rows if r["resumes"] == "0"]
    assert len(retry) == 1 and retry[0]["state"] == "complete"
    assert retry[0]["workdir"] == rows[0]["workdir"]
    assert "Resuming from step" in resumed.stderr
    assert sum(r["state"] == "complete" for r in rows) == 2
    assert max(int(p.name) for p in checkpoints.glob("*") if p.name.isdigit()) == 30


def _initdb() -> str:
    found = shutil.which("initdb") or next(iter(sorted(glob.glob(
        "/usr/lib/postgresql/*/bin/initdb"))), None)
    if found is None:
        pytest.fail("PostgreSQL's initdb is not installed: apt-get install postgresql (.ci/run "
                    "installs it).")
    return found


@pytest.fixture
def postgres(tmp_path):
    """A real PostgreSQL server in a temporary directory on 127.0.0.1 (trust auth): its URL.
    As root, the server runs as the `postgres` user (initdb refuses root)."""
    initdb = _initdb()
    bindir = os.path.dirname(os.path.realpath(initdb))
    # Not under tmp_path: pytest's directories are root's alone, and the server's user must
    # reach its data.
    root = pathlib.Path(tempfile.mkdtemp(prefix="jaxgenre-pg-"))
    data, sockets = root / "data", root / "sockets"
    sockets.mkdir()
    as_user = []
    if os.geteuid() == 0:
        user = pwd.getpwnam("postgres")
        for path in (root, sockets):
            os.chown(path, user.pw_uid, user.pw_gid)
        as_user = ["runuser", "-u", "postgres", "--"]
    made = subprocess.run([*as_user, os.path.join(bindir, "initdb"), "-D", str(data), "-A",
                           "trust", "-U", "postgres"], capture_output=True, text=True, timeout=120)
    assert made.returncode == 0, made.stdout + made.stderr
    port = th.free_port()
    server = subprocess.Popen([*as_user, os.path.join(bindir, "postgres"), "-D", str(data),
                               "-h", "127.0.0.1", "-p", str(port), "-k", str(sockets)],
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    url = f"postgresql://postgres@127.0.0.1:{port}/postgres"
    deadline = time.monotonic() + 60
    while subprocess.run([os.path.join(bindir, "pg_isready"), "-h", "127.0.0.1", "-p",
                          str(port)], capture_output=True).returncode != 0:
        assert server.poll() is None and time.monotonic() < deadline, server.stdout.read()
        time.sleep(0.2)
    yield url
    server.terminate()
    server.wait(timeout=60)
    shutil.rmtree(root)


def test_workers_share_a_study_on_a_real_postgresql_server(tiny_fma, tmp_path, postgres):
    study = tmp_path / "study"
    proc = _run(_argv(tiny_fma, study, _space(tmp_path), "--trials", "3", "--workers", "2",
                      "--storage", postgres, "--pruner", "none"))
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert not (study / "journal.log").exists()
    import optuna
    loaded = optuna.load_study(study_name="jaxgenre", storage=postgres)
    numbers = [t.number for t in loaded.trials]
    assert len(numbers) == len(set(numbers)) >= 3
    assert sum(t.state == optuna.trial.TrialState.COMPLETE for t in loaded.trials) >= 3
    assert len(_results(study)) == len(numbers)


def test_bad_input_is_refused_in_one_line_before_any_trial(tiny_fma, tmp_path):
    def space(name: str, text: str) -> str:
        (tmp_path / name).mkdir()
        return _space(tmp_path / name, text)

    good = _space(tmp_path)
    cases = {  # name: (space file, extra flags, what the error says)
        "unknown_key": (space("a", SPACE.replace("optim.learning_rate", "optim.learning_rat")),
                        [], "'optim.learning_rat' is not in the config; did you mean "
                        "optim.learning_rate"),
        "wrong_type": (space("b", SPACE.replace('"augment.mixup_alpha"', '"total_steps"')), [],
                       "total_steps is int (6) in the config, but the space gives it the "
                       "choice 0.0"),
        "objective": (good, ["--objective", "val_acuracy"],
                      "--objective 'val_acuracy' is not reported"),
        "storage": (good, ["--storage", "postgresql://nobody@127.0.0.1:1/none"],
                    "--storage postgresql://nobody@127.0.0.1:1/none cannot be used"),
        "timeout": (good, ["--timeout", "soon"], "--timeout 'soon'"),
        "start": (space("c", SPACE.replace("1e-6, 1e-2", "1e-6, 1e-5")), ["--start_from_config"],
                  "--start_from_config: the config's optim.learning_rate = 0.002 is outside the "
                  "space's [1e-06, 1e-05]"),
    }
    procs = {name: subprocess.Popen(_argv(tiny_fma, tmp_path / name, space_file, *extra),
                                    cwd=th.ROOT, env=ENV, text=True, stdout=subprocess.PIPE,
                                    stderr=subprocess.PIPE)
             for name, (space_file, extra, _) in cases.items()}
    for name, proc in procs.items():
        _, err = proc.communicate(timeout=300)
        lines = [line for line in err.splitlines() if line.strip()]
        assert proc.returncode == 1 and cases[name][2] in err, (name, err[-2000:])
        assert len(lines) <= 2, (name, lines)
        assert not (tmp_path / name / "trials").exists(), name


def test_the_configs_point_is_refused_where_the_space_cannot_propose_it():
    import ml_collections

    from jaxgenre.sweep import space
    config = ml_collections.ConfigDict({"optim": {"learning_rate": 1e-3, "schedule": "cosine",
                                                  "clip": ml_collections.FieldReference(
                                                      None, field_type=float)}})
    dists = {"optim.learning_rate": space.log_uniform(1e-4, 1e-2),
             "optim.schedule": space.choice(["cosine", "linear"])}
    assert space.config_point(dists, config) == {"optim.learning_rate": 1e-3,
                                                 "optim.schedule": "cosine"}
    with pytest.raises(space.SpaceError, match=r"optim.clip = None is outside the space's "
                                               r"\[0.1, 1.0\]"):
        space.config_point({"optim.clip": space.uniform(0.1, 1.0)}, config)
