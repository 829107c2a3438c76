"""Damaged checkpoints, one file at a time: each file of a saved step cut to 7 bytes, emptied or
deleted in turn (the files found by walking the step: whatever Orbax writes). Training resumes
from the newest step that reads and moves the damaged one to unreadable_checkpoints/; evaluation
and prediction open an intact step, name the damaged one when it is asked for, and move nothing;
processes that see different files agree on one step.

A damaged file that no restore needs (commit markers, the `_sharding` record, the per-process
OCDBT files that the merged database replaced, metadata Orbax can do without) leaves a step that
restores exactly as saved: such a step is kept, and the tests check that it restores bit for bit.
"""
import contextlib
import json
import os
import pathlib
import re
import shutil
import subprocess
import sys

import jax
import numpy as np
import pytest
import soundfile

from jaxgenre import tasks, train
from jaxgenre.core import sharding
from jaxgenre.evaluators import checkpoints
from jaxgenre.inference import judge as judge_lib
from jaxgenre.run import checkpointing, rundir
from jaxgenre.tools import predict
from tests import train_helpers as th

DAMAGES = ("cut to 7 bytes", "emptied", "deleted")
# What Orbax reads to list and rank steps: a step with either damaged is never used, even where
# its arrays would restore.
LISTING_FILES = ("_CHECKPOINT_METADATA", "metrics/metrics")


def _config(data_dir, **extra):
    """Checkpoints at 2 and 4, each with an evaluation, so that both steps carry metrics; a
    one-layer model (fewer arrays: each of the many restores below takes half the time)."""
    return th.config(data_dir, **{"total_steps": 4, "checkpoint_every_steps": 2,
                                  "eval_every_steps": 2, "model.channels": (8,), **extra})


@pytest.fixture(scope="module")
def run(tiny_fma, tmp_path_factory):
    workdir = str(tmp_path_factory.mktemp("damaged_run"))
    train.train_and_evaluate(_config(tiny_fma[0]), workdir)
    assert th.saved_steps(workdir) == [2, 4]
    return workdir


class Saved:
    """The run read back intact, once: its task (built once for every restore below: building
    it costs more than a restore), what training restores, and both steps as saved."""

    def __init__(self, workdir: str):
        self.mesh = sharding.make_mesh()
        self.config = rundir.load_config(workdir)
        self.task = tasks.create(self.config, rundir.data_spec(workdir, self.config), self.mesh)
        self.abstract = checkpointing.abstract_with_shardings(
            *sharding.abstract_state(self.task.init, self.mesh))
        mngr = checkpointing.manager(workdir, read_only=True)
        self.steps = {step: checkpointing.to_items(checkpointing.restore(mngr, step,
                                                                         self.abstract))
                      for step in (2, 4)}

    def make_task(self, config, data, mesh, training):
        """`tasks.create` for `rundir.restore`, with the task built once."""
        return self.task

    def same_as(self, step: int, state, items=None) -> bool:
        """Whether `items` of `state` (default all) hold what `step` saved, bit for bit."""
        restored, saved = checkpointing.to_items(state), self.steps[step]
        return all(_same(restored[item], saved[item]) for item in items or saved)


@pytest.fixture(scope="module")
def saved(run):
    return Saved(run)


def _same(a, b) -> bool:
    return all(np.array_equal(x, y) for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b),
                                                      strict=True))


def _step_files(workdir: str, step: int) -> list[str]:
    root = pathlib.Path(workdir) / "checkpoints" / str(step)
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())


@contextlib.contextmanager
def _damaged(run: str, workdir: pathlib.Path, name: str, how: str):
    """File `name` of step 4 of `workdir` (a copy of `run` made of hard links) damaged `how` for
    the block; after it, the step is the run's again (put back from unreadable_checkpoints/ if
    training moved it there).

    One file replaced per case, not a copy of the run: the cases stay fast. The damaged file is
    replaced, never written through (it is a link to the run's), and what the cases run writes
    no file in place.
    """
    path = workdir / "checkpoints" / "4" / name
    head = path.read_bytes()[:7]
    path.unlink()
    if how != "deleted":
        path.write_bytes(b"" if how == "emptied" else head)
    try:
        yield
    finally:
        aside = workdir / "unreadable_checkpoints"
        if aside.exists():
            (aside / "4").rename(workdir / "checkpoints" / "4")
            aside.rmdir()
        path.unlink(missing_ok=True)
        os.link(pathlib.Path(run) / "checkpoints" / "4" / name, path)


def _files_and_sizes(workdir: str) -> dict:
    """{path: (size, modification time)} of every file: what a read-only tool leaves as it was."""
    return {str(p): (p.stat().st_size, p.stat().st_mtime_ns)
            for p in pathlib.Path(workdir).rglob("*") if p.is_file()}


def _resume(workdir: str, saved: Saved):
    """What `jaxgenre.train` does with a saved run: its manager, then the newest readable step."""
    best = rundir.best_options(saved.config)
    mngr = checkpointing.manager(workdir, saved.config.keep_best, **best)
    return checkpointing.restore_newest_readable(
        mngr, saved.abstract, pathlib.Path(workdir) / "unreadable_checkpoints")


def _check_readers_then_training(workdir: str, name: str, saved: Saved) -> None:
    """With file `name` of step 4 damaged: evaluation names step 4 or reads it exactly as
    saved, predict opens step 2, neither changes a file; then training resumes from step 2 and
    moves step 4 aside, or resumes step 4 exactly as saved."""
    before = _files_and_sizes(workdir)
    # what `jaxgenre.evaluate --checkpoint 4` reads
    try:
        run_4 = rundir.restore(workdir, saved.mesh, saved.make_task, "4", items="eval")
    except rundir.RunError as e:
        assert os.path.join(workdir, "checkpoints", "4") in str(e)
        assert "Steps that restore: [2]; pass one as --checkpoint STEP" in str(e)
    else:  # the damaged file is one evaluation does not read
        assert name not in LISTING_FILES
        assert saved.same_as(4, run_4.state, saved.task.eval_items)
    # what `jaxgenre.predict --checkpoint 2` reads (judge.restore, the task built once)
    run_2 = rundir.restore(workdir, saved.mesh, saved.make_task, "2", items=("ema",),
                           expect_tasks=("classifier",))
    assert run_2.step == 2 and saved.same_as(2, run_2.state, ("ema",))
    assert _files_and_sizes(workdir) == before  # read-only: nothing moved or written

    state, step = _resume(workdir, saved)
    moved = os.path.isdir(os.path.join(workdir, "unreadable_checkpoints", "4"))
    if step == 4:  # the damaged file is one no restore reads
        assert name not in LISTING_FILES and not moved
        assert saved.same_as(4, state)
    else:
        assert step == 2 and saved.same_as(2, state) and moved
        assert th.saved_steps(workdir) == [2]


@pytest.mark.slow  # every file x 3 damages; the fast tier keeps the new user's case
@pytest.mark.parametrize("how", DAMAGES)
def test_each_damaged_file_is_named_by_evaluate_predict_opens_the_other_training_moves_it(
        run, saved, tmp_path, how):
    copy = tmp_path / "run"
    shutil.copytree(run, copy, copy_function=os.link)
    problems = {}
    for name in _step_files(run, 4):
        with _damaged(run, copy, name, how):
            try:
                _check_readers_then_training(str(copy), name, saved)
            except Exception as e:  # every file's outcome is reported, not only the first one
                problems[name] = f"{type(e).__name__}: {e}"
    assert not problems, "\n".join(f"{name}: {why}" for name, why in problems.items())


def _wav(path: pathlib.Path) -> str:
    rng = np.random.default_rng(0)
    soundfile.write(str(path), rng.uniform(-0.5, 0.5, 2 * 22050).astype(np.float32), 22050)
    return str(path)


def test_a_step_with_every_file_cut_short_is_named_by_the_tools_then_training_moves_it_aside(
        run, tiny_fma, tmp_path, caplog, capsys):
    """The new user's case: every file of the latest step cut to 7 bytes (its metrics included,
    on which Orbax's manager stopped as it opened), then the tools, then the train command
    again with more steps."""
    workdir = str(tmp_path / "run")
    shutil.copytree(run, workdir)
    for name in _step_files(workdir, 4):
        os.truncate(os.path.join(workdir, "checkpoints", "4", name), 7)
    steps_before = _files_and_sizes(os.path.join(workdir, "checkpoints"))
    step_4 = os.path.join(workdir, "checkpoints", "4")

    job = checkpoints.CheckpointEvaluator(workdir, "test")
    assert job.evaluate("2")["step"] == 2
    # 'latest' and 'best' name the damaged step rather than quietly evaluate another one
    for which in ("4", "latest", "best"):
        with pytest.raises(rundir.RunError) as err:
            job.evaluate(which)
        assert step_4 in str(err.value) and "Steps that restore: [2]" in str(err.value)
    seen = []

    def evaluate(which):  # step 2 was evaluated above: --watch goes on to step 4
        seen.append(which)
        return {} if which == "2" else real_evaluate(which)

    real_evaluate, job.evaluate = job.evaluate, evaluate
    with pytest.raises(rundir.RunError, match="checkpoints/4 cannot be read"):
        job.watch(poll_seconds=0)
    assert seen == ["2", "4"]

    song = _wav(tmp_path / "song.wav")
    assert predict.predict([song], workdir, checkpoint="2") == 1
    assert f"\n{song}: " in capsys.readouterr().out
    for which in ("4", "best"):
        with pytest.raises(judge_lib.JudgeError, match=re.escape(step_4)):
            predict.predict([song], workdir, checkpoint=which)
    assert _files_and_sizes(os.path.join(workdir, "checkpoints")) == steps_before

    with caplog.at_level("WARNING"):
        train.train_and_evaluate(_config(tiny_fma[0], total_steps=6), workdir)
    assert "unreadable newer step(s) [4] moved to" in caplog.text
    assert (tmp_path / "run" / "unreadable_checkpoints" / "4" / "model").is_dir()
    assert th.saved_steps(workdir) == [2, 4, 6]  # 4 trained again from 2


def test_a_damaged_older_step_stops_best_and_training_moves_it_aside(run, saved, tmp_path):
    """The best step is unknown while a step's metrics do not read: 'best' names it, 'latest'
    still opens. Training resumes from the newest step and moves the damaged older one aside
    too, after which 'best' works again."""
    workdir = str(tmp_path / "run")
    shutil.copytree(run, workdir)
    os.truncate(os.path.join(workdir, "checkpoints", "2", "metrics", "metrics"), 7)
    with pytest.raises(rundir.RunError, match="The best step is unknown: checkpoint .*2 cannot"):
        rundir.restore(workdir, saved.mesh, saved.make_task, "best", items=("ema",))
    assert rundir.restore(workdir, saved.mesh, saved.make_task, "latest", items=("ema",)).step == 4
    state, step = _resume(workdir, saved)
    assert step == 4 and saved.same_as(4, state)
    assert (tmp_path / "run" / "unreadable_checkpoints" / "2").is_dir()
    assert th.saved_steps(workdir) == [4]
    assert rundir.restore(workdir, saved.mesh, saved.make_task, "best", items=("ema",)).step == 4


@pytest.mark.slow
@pytest.mark.parametrize("name", ["model/manifest.ocdbt", "metrics/metrics"])
def test_two_processes_that_read_different_files_resume_the_same_step(run, tmp_path, name):
    """Each process opens its own copy of the run, identical but for one file of step 4 cut to 7
    bytes in process 1's: how hosts read a shared directory through caches that disagree. Both
    must resume step 2 (process 0 moves step 4 of the copy it sees aside); before, process 0
    resumed 4, process 1 resumed 2, and the job hung at the next collective."""
    copies = [str(tmp_path / f"process_{i}") for i in range(2)]
    for copy in copies:
        shutil.copytree(run, copy)
    os.truncate(os.path.join(copies[1], "checkpoints", "4", name), 7)
    out, port = tmp_path / "steps.json", th.free_port()
    code = ("import sys; from tests import multiprocess_steps as m; "
            "m.resume_newest_readable(*sys.argv[1:])")
    env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=2")
    procs = [subprocess.Popen([sys.executable, "-c", code, copies[i], str(out), "2", str(i),
                               str(port)], cwd=th.ROOT, env=env, stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True) for i in range(2)]
    try:
        outputs = [p.communicate(timeout=120)[0] for p in procs]
    finally:
        for p in procs:
            p.kill()
    for p, output in zip(procs, outputs, strict=True):
        assert p.returncode == 0, output[-3000:]
    assert json.loads(out.read_text()) == [2, 2]
    assert (tmp_path / "process_0" / "unreadable_checkpoints" / "4").is_dir()
