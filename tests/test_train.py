"""Training end to end on the tiny dataset: sharding, resume after SIGKILL and SIGTERM, NaN, bad input,
and evaluation of a checkpoint from its own process (several processes: test_multihost.py)."""
import functools
import os
import signal
import time

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxgenre import train
from jaxgenre.core import sharding
from jaxgenre.evaluators import checkpoints
from jaxgenre.run import preemption
from jaxgenre.tasks import classifier, optim
from tests import train_helpers as th

TOLERANCE = 1e-5  # float32 reductions in a different order (8 devices vs 1)


@pytest.fixture(scope="module")
def run8(tiny_fma, tmp_path_factory):
    """A 6-step run on the 8 fake devices of this process."""
    workdir = str(tmp_path_factory.mktemp("run8"))
    metrics = train.train_and_evaluate(th.config(tiny_fma[0]), workdir)
    return workdir, metrics


def test_run_writes_checkpoints_config_and_metrics(run8):
    workdir, metrics = run8
    assert jax.device_count() == 8
    assert 0.0 <= metrics["val_accuracy"] <= 1.0 and np.isfinite(metrics["val_loss"])
    assert th.saved_steps(workdir)[-1] == 6
    assert th.read_json(os.path.join(workdir, "config.json"))["model"]["name"] == "mfcc_cnn"
    assert any(f.startswith("events.out.tfevents") for f in os.listdir(workdir))
    # optim.ema_decay = 0 (the default): the evaluated weights are the trained ones.
    assert th.max_abs_diff(th.params(workdir, 6, "ema_params"), th.params(workdir, 6)) == 0.0


def test_ema_params_follow_the_configured_decay(tiny_fma):
    config = th.config(tiny_fma[0], **{"optim.ema_decay": 0.9})
    tx = optim.make(config.optim, config.total_steps)
    step = jax.jit(functools.partial(
        classifier.train_step, graphdef=classifier.model_graph(config, 8), tx=tx, config=config,
        mel=classifier.mel_config(config, 22_050), mesh=sharding.make_mesh(), num_classes=8,
        base_key=jax.random.key(1)))
    state = classifier.init_state(config, 8, tx, jax.random.key(0))
    rng = np.random.default_rng(0)
    batch = {"audio": jnp.asarray(rng.integers(-3000, 3000, (8, 22_050)), jnp.int16),
             "label": jnp.arange(8, dtype=jnp.int32)}
    expected = state.params
    for i in range(3):
        state, _ = step(state, batch)
        rate = min(0.9, (1 + i) / (10 + i))
        expected = jax.tree.map(lambda e, p, r=rate: r * e + (1 - r) * p, expected, state.params)

    def gap(a, b):
        return max(float(jnp.abs(x - y).max()) for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)))
    assert gap(state.ema_params, expected) < 1e-6
    assert gap(state.ema_params, state.params) > 1e-4  # the average lags the trained weights


@pytest.mark.slow
def test_eight_devices_match_one_device(run8, tiny_fma, tmp_path):
    """Also: run from another directory (the config path is resolved to the installed
    configs), and the console shows our lines only: 2 start-up lines, 3 progress lines, 2
    evaluations, 3 checkpoint saves (316 lines before the console was quieted)."""
    workdir = str(tmp_path / "run")
    code, out = th.cli(workdir, tiny_fma[0], devices=1, cwd=str(tmp_path))
    assert code == 0, out
    lines = out.strip().splitlines()
    assert len(lines) == 10, out
    assert sum("checkpoint saving" in line for line in lines) == 3
    assert sum(" evaluation: val_accuracy=" in line for line in lines) == 2
    diff = th.max_abs_diff(th.params(run8[0], 6), th.params(workdir, 6))
    assert diff <= TOLERANCE, diff


@pytest.mark.slow
def test_resume_after_sigkill_matches_an_uninterrupted_run(run8, tiny_fma, tmp_path):
    proc = th.cli(str(tmp_path), tiny_fma[0], devices=8, wait=False)
    deadline = time.time() + 300
    while 2 not in th.saved_steps(str(tmp_path)) and time.time() < deadline:
        time.sleep(0.2)
    time.sleep(0.5)  # let the async save commit
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert 6 not in th.saved_steps(str(tmp_path)), "killed too late to test resuming"
    code, out = th.cli(str(tmp_path), tiny_fma[0], devices=8)
    assert code == 0, out
    assert "Resuming from step" in out
    assert th.max_abs_diff(th.params(run8[0], 6), th.params(str(tmp_path), 6)) <= TOLERANCE


@pytest.mark.slow
def test_sigterm_saves_the_step_reached_and_the_restart_resumes_exactly(run8, tiny_fma,
                                                                        tmp_path):
    """A real SIGTERM mid-run (no periodic checkpoint before the end): the step reached is
    saved, the exit status is 143, and the restart ends where an uninterrupted run does."""
    extra = {"log_every_steps": 1, "checkpoint_every_steps": 100}
    proc = th.cli(str(tmp_path), tiny_fma[0], devices=8, wait=False, **extra)
    lines, started = [], time.time()
    for line in proc.stdout:
        lines.append(line)
        if "step 1/6" in line:
            sent = time.time()
            proc.send_signal(signal.SIGTERM)
            break
        assert time.time() - started < 300, "".join(lines)
    out = "".join(lines) + proc.communicate(timeout=300)[0]
    assert proc.returncode == preemption.EXIT_CODE, out
    saved = th.saved_steps(str(tmp_path))
    assert len(saved) == 1 and 1 <= saved[0] < 6, out
    assert f"SIGTERM: saved step {saved[0]}" in out
    print(f"SIGTERM to exit: {time.time() - sent:.2f} s (saved step {saved[0]})")
    code, out = th.cli(str(tmp_path), tiny_fma[0], devices=8, **extra)
    assert code == 0 and f"Resuming from step {saved[0]}" in out, out
    assert th.max_abs_diff(th.params(run8[0], 6), th.params(str(tmp_path), 6)) <= TOLERANCE


def test_sigterm_at_the_last_step_completes_the_run(tiny_fma, tmp_path, monkeypatch):
    """A notice that arrives during the last step: the step is saved and the run ends as
    complete (no Preempted, so the CLI exits 0, not 143)."""
    total = th.config(tiny_fma[0]).total_steps
    monkeypatch.setattr(preemption.Notice, "reached", lambda self, step: step == total)
    train.train_and_evaluate(th.config(tiny_fma[0], eval_every_steps=100), str(tmp_path))
    assert th.saved_steps(str(tmp_path))[-1] == total


def test_nan_stops_with_the_step_and_keeps_the_last_good_checkpoint(tiny_fma, tmp_path):
    config = th.config(tiny_fma[0], **{"optim.learning_rate": 1e30, "optim.grad_clip_norm": 0.0,
                                       "checkpoint_every_steps": 1, "total_steps": 20})
    with pytest.raises(train.NonFiniteLossError, match=r"at step (\d+)") as err:
        train.train_and_evaluate(config, str(tmp_path))
    bad_step = int(err.value.args[0].split("at step ")[1].split(";")[0])
    kept = th.saved_steps(str(tmp_path))
    assert kept and max(kept) < bad_step
    assert all(np.isfinite(v).all() for v in th.params(str(tmp_path), max(kept)).values())


def test_unknown_config_key_and_bad_value_are_refused_in_a_few_lines(tiny_fma, tmp_path):
    code, out = th.cli(str(tmp_path), tiny_fma[0], extra_args=["--config.optim.lr=1"])
    assert code != 0
    assert "unknown config key(s): optim.lr" in out and "optim.learning_rate" in out
    code, out = th.cli(str(tmp_path), tiny_fma[0], batch_size="abc")
    assert code != 0 and len(out.strip().splitlines()) == 2, out  # 48 lines of traceback before
    assert out.startswith("error: flag --config.batch_size=abc: invalid literal for int()")


def test_unknown_model_and_bad_batch_are_refused(tiny_fma):
    with pytest.raises(ValueError, match="registered models"):
        train.check_config(th.config(tiny_fma[0], **{"model.name": "mobilenet"}))
    with pytest.raises(ValueError, match="data.train_split 'validation'; valid: train, "):
        train.check_config(th.config(tiny_fma[0], **{"data.train_split": "validation"}))
    with pytest.raises(ValueError, match="multiple of the device count"):
        train.check_config(th.config(tiny_fma[0], batch_size=12))


def test_evaluate_restores_in_another_process_layout_and_reports(run8, capsys):
    workdir = run8[0]
    job = checkpoints.CheckpointEvaluator(workdir, "test")
    result = job.evaluate("latest")
    assert result["step"] == 6 and result["num_examples"] == 16
    for key in ("accuracy", "balanced_accuracy", "top3_accuracy", "confusion_matrix", "per_genre"):
        assert key in result
    assert np.array(result["confusion_matrix"]).sum() == 16
    saved = th.read_json(os.path.join(workdir, "eval", "test_6.json"))
    assert saved["accuracy"] == result["accuracy"]
    assert os.path.getsize(os.path.join(workdir, "eval", "test_6.png")) > 1000
    printed = capsys.readouterr().out.strip().splitlines()
    assert printed[-1].startswith("accuracy:")
    best = job.evaluate("best")
    assert best["step"] == 6  # the one step saved with validation metrics (eval_every_steps 3)


def test_evaluate_cli_restores_an_8_device_checkpoint_on_1_device(run8):
    import subprocess
    import sys
    env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=1")
    out = subprocess.run([sys.executable, "-m", "jaxgenre.evaluate", "--workdir", run8[0],
                          "--split", "validation", "--checkpoint", "6"], cwd=th.ROOT, env=env,
                         capture_output=True, text=True, timeout=600, check=False)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip().splitlines()[-1].startswith("accuracy:")
    one_device = th.read_json(os.path.join(run8[0], "eval", "validation_6.json"))
    eight_devices = checkpoints.CheckpointEvaluator(run8[0], "validation").evaluate("6")
    assert one_device["num_examples"] == eight_devices["num_examples"] == 16
    np.testing.assert_allclose(one_device["loss"], eight_devices["loss"], rtol=1e-4)
