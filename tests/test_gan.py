"""Style transfer: spectral norm, generator, losses; the GAN trained by the same trainer (devices,
resume, NaN; processes in test_multihost.py); the transfer CLI and the evaluator taking a GAN
run; bad input."""
import dataclasses
import os
import signal
import subprocess
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import soundfile
from flax import nnx

from jaxgenre import tasks, train
from jaxgenre.audio import frontend, vocoder
from jaxgenre.core import sharding
from jaxgenre.data import spec
from jaxgenre.inference import judge
from jaxgenre.models import stargan
from jaxgenre.models.ops import spectral_norm
from jaxgenre.run import rundir
from jaxgenre.tasks import classifier, gan, gan_losses
from jaxgenre.transfer import generator
from tests import train_helpers as th

TOLERANCE = 1e-4  # float32, 8 devices vs 1: two optimizers and R1's second derivatives
# The generator's convolution biases that feed only an instance norm (which removes any
# per-channel constant): their gradients are round-off, which Adam scales to steps of up to the
# learning rate whatever their size, so they carry nothing to compare between runs.
NORMED_BIASES = ("/down1/bias/value", "/down2/bias/value", "/up1/bias/value",
                 "/up2/bias/value", "/conv1/bias/value")


def test_spectral_norm_divides_by_the_largest_singular_value_and_never_writes_back():
    layer = spectral_norm.SNConv(6, 5, 3, rngs=nnx.Rngs(0))
    w = np.asarray(layer.kernel.value).copy()
    x = jax.random.normal(jax.random.key(1), (2, 8, 8, 6))
    for _ in range(30):  # power iteration converges on u
        layer(x, update=True)
    assert np.array_equal(np.asarray(layer.kernel.value), w)  # the Param holds the raw W
    sigma = np.linalg.svd(w.reshape(-1, 5), compute_uv=False)[0]
    normalised, _ = spectral_norm.normalised_weight(layer.kernel.value, layer.u.value, False)
    assert np.linalg.svd(np.asarray(normalised).reshape(-1, 5), compute_uv=False)[0] == \
        pytest.approx(1.0, abs=1e-3)
    assert float(jnp.abs(normalised - w / sigma).max()) < 1e-3
    u = np.asarray(layer.u.value).copy()
    layer(x, update=False)  # inference leaves u alone
    assert np.array_equal(np.asarray(layer.u.value), u)
    grads = jax.grad(lambda k: spectral_norm.normalised_weight(k, layer.u.value, False)[0].sum())(
        layer.kernel.value)
    # d sum(W / sigma) / dW = 1 / sigma - sum(W) / sigma^2 * v u^T, with sigma = v^T W u: the
    # second term is there only if the gradient flows through sigma too
    mat, u = np.asarray(w, np.float64).reshape(-1, 5), np.asarray(layer.u.value, np.float64)
    v = mat @ u / np.linalg.norm(mat @ u)
    sigma_u = v @ mat @ u
    expected = 1.0 / sigma_u - mat.sum() / sigma_u ** 2 * np.outer(v, u)
    np.testing.assert_allclose(np.asarray(grads).reshape(-1, 5), expected, rtol=1e-3, atol=1e-5)


def test_generator_starts_as_identity_on_any_length_and_the_discriminator_has_no_batchnorm():
    g = stargan.Generator(8, rngs=nnx.Rngs(0), channels=4, encoder_blocks=1, decoder_blocks=1,
                          style_dim=8)
    for frames in (37, 40):  # not a multiple of 4, and one
        x = jax.random.normal(jax.random.key(frames), (2, frames, 30, 1))
        y = g(x, jnp.array([1, 5]))
        assert y.shape == x.shape and float(jnp.abs(y - x).max()) == 0.0
    d = stargan.Discriminator(8, rngs=nnx.Rngs(0), channels=4, num_layers=2)
    assert not jax.tree.leaves(nnx.state(d, nnx.BatchStat))
    assert d(x, jnp.array([1, 5])).shape == (2,)


def test_adversarial_losses_and_penalties_have_their_textbook_values():
    real, fake = jnp.array([2.0, 0.5]), jnp.array([-2.0, 0.0])
    assert float(gan_losses.discriminator_loss("hinge", real, fake)) == pytest.approx(0.25 + 0.5)
    assert float(gan_losses.generator_loss("hinge", fake)) == pytest.approx(1.0)
    assert float(gan_losses.discriminator_loss("nonsaturating", real, fake)) == pytest.approx(
        float(jnp.mean(jax.nn.softplus(-real)) + jnp.mean(jax.nn.softplus(fake))))
    assert float(gan_losses.discriminator_loss("wgan_gp", real, fake)) == pytest.approx(-2.25)
    w = jnp.array([3.0, 4.0])  # a linear critic: grad = w, ||w|| = 5
    x = jnp.ones((4, 2))
    assert float(gan_losses.r1_penalty(lambda v: v @ w, x)) == pytest.approx(12.5)
    assert float(gan_losses.gradient_penalty(lambda v: v @ w, x, -x, jax.random.key(0))) == \
        pytest.approx(16.0)
    assert float(gan_losses.generator_loss("nonsaturating", fake)) == pytest.approx(
        np.mean(np.log1p(np.exp([2.0, 0.0]))))  # -log sigmoid(f), averaged
    assert float(gan_losses.generator_loss("wgan_gp", fake)) == pytest.approx(1.0)  # -mean f
    with pytest.raises(ValueError, match="valid: hinge, nonsaturating, wgan_gp"):
        gan_losses.generator_loss("lsgan", fake)


def test_the_frozen_classifier_hears_what_its_run_was_trained_on(tiny_fma, tmp_path):
    """A classifier trained with a fixed reference (frontend.ref 1.0), fed the log-mel of a
    generator with another one (4.0): its logits are those of the classifier's own input
    path, whatever each clip's level (before: re-referenced to each clip's maximum)."""
    workdir = str(tmp_path / "fixed_ref")
    train.train_and_evaluate(th.config(tiny_fma[0], **{"frontend.ref": 1.0}, total_steps=2,
                                       checkpoint_every_steps=2, eval_every_steps=2), workdir)
    mesh = sharding.make_mesh()
    run = judge.restore(workdir, mesh)
    gan_mel = dataclasses.replace(run.task.mel, ref=4.0)
    frozen = judge.FrozenClassifier(workdir, mesh, gan_mel, run.data.class_names)
    rng = np.random.default_rng(0)
    levels = np.geomspace(300, 20_000, 8)[:, None]  # clips from quiet to loud
    audio = jnp.asarray(np.clip(rng.normal(size=(8, 22_050)) * levels, -32768, 32767), jnp.int16)
    got = frozen.logits(frozen.params, frontend.log_mel(audio, gan_mel))
    model = nnx.merge(run.task.graphdef, run.state.ema_params, run.state.ema_model_state)
    x = classifier.model_input(audio, classifier.input_kind(run.config), run.config,
                               run.task.mel, mesh)
    want = model(x, train=False)
    assert float(jnp.abs(got - want).max()) <= 1e-3 * float(jnp.abs(want).max())


def test_confusion_loss_is_cross_entropy_to_uniform_and_bounded_below():
    logits = jax.random.normal(jax.random.key(0), (3, 5)) * 4.0
    log_p = logits - np.log(np.exp(np.asarray(logits)).sum(-1, keepdims=True))
    assert float(gan_losses.confusion_loss(logits)) == pytest.approx(float(-log_p.mean()),
                                                                     rel=1e-5)
    uniform, confidently_wrong = jnp.zeros((2, 5)), jnp.array([[20.0, 0, 0, 0, 0]] * 2)
    assert float(gan_losses.confusion_loss(uniform)) == pytest.approx(np.log(5))
    assert float(gan_losses.confusion_loss(confidently_wrong)) > np.log(5) + 5


def test_n_critic_updates_the_generator_on_its_steps_only_and_its_average_counts_them(tiny_fma):
    """wgan_gp with n_critic 2: G (and its average) moves on steps 0 and 2 only, the D-only
    steps report G's loss as 0, and the average's warm-up counts generator updates."""
    config = th.gan_config(tiny_fma[0], **{"gan.loss": "wgan_gp", "gan.n_critic": 2,
                                           "gan.r1_weight": 0.0, "gan.ema_decay": 0.9})
    task = gan.StarGanTask(config, spec.DataSpec("fma/small", tuple(f"g{i}" for i in range(8)),
                                                 22_050, 22_050), sharding.make_mesh())
    step, state = jax.jit(task.train_step), jax.jit(task.init)()
    rng = np.random.default_rng(0)
    batch = {"audio": jnp.asarray(rng.integers(-8000, 8000, (8, 22_050)), jnp.int16),
             "label": jnp.arange(8, dtype=jnp.int32)}
    expected_ema, g_updates = state.g_ema, 0
    for i in range(4):
        before = state.g_params
        state, metrics = step(state, batch)
        moved = th.tree_max_abs_diff(before, state.g_params)
        if i % 2:
            assert moved == 0.0 and float(metrics["g_loss"]) == 0.0
        else:
            assert moved > 0.0 and float(metrics["g_loss"]) != 0.0
            rate = min(0.9, (1 + g_updates) / (10 + g_updates))
            expected_ema = jax.tree.map(lambda e, p, r=rate: r * e + (1 - r) * p, expected_ema,
                                        state.g_params)
            g_updates += 1
    assert th.tree_max_abs_diff(expected_ema, state.g_ema) < 1e-6


@pytest.fixture(scope="module")
def classifiers(tiny_fma, tmp_path_factory):
    """Two small classifier runs with the GAN's frontend: (for the loss and scores, a judge)."""
    dirs = []
    for seed in (0, 1):
        workdir = str(tmp_path_factory.mktemp(f"classifier{seed}"))
        train.train_and_evaluate(th.config(tiny_fma[0], seed=seed, total_steps=4,
                                           checkpoint_every_steps=4, eval_every_steps=4), workdir)
        dirs.append(workdir)
    return dirs


@pytest.fixture(scope="module")
def gan8(tiny_fma, classifiers, tmp_path_factory):
    """A 4-step StarGAN run on the 8 fake devices of this process, frozen classifier in the loss."""
    workdir = str(tmp_path_factory.mktemp("gan8"))
    config = th.gan_config(tiny_fma[0], **{"gan.classifier_workdir": classifiers[0]})
    return workdir, train.train_and_evaluate(config, workdir)


def test_gan_run_saves_named_items_and_the_proxy_scores(gan8):
    workdir, val = gan8
    assert sorted(os.listdir(os.path.join(workdir, "checkpoints", "4"))) == sorted(
        ["_CHECKPOINT_METADATA", "commit_success.txt", "metrics", "progress", "generator",
         "discriminator", "generator_ema", "generator_optimizer", "discriminator_optimizer"])
    # 8 validation clips (evals.val.clips) each turned into the 7 other genres: 56 pairs
    pairs = 8 * 7
    assert val["val_target_accuracy"] * pairs == pytest.approx(round(val["val_target_accuracy"]
                                                                     * pairs), abs=1e-6)
    assert val["val_change_db"] > 0.0  # 4 steps moved the averaged generator off the identity
    assert 0.0 < val["val_chroma_kept"] <= 1.0
    d_rest = th.params(workdir, 4, "d_rest", gan.GanState)
    assert d_rest and all(k.endswith("/u/value") for k in d_rest)  # spectral-norm vectors


def test_the_autoencoder_trains_with_its_latent_adversary_and_converts(tiny_fma, classifiers,
                                                                       tmp_path):
    """The autoencoder task end to end: trained with the latent confusion term, scored by the
    proxy, its run read back as a transfer method whose conversions depend on the target."""
    workdir = str(tmp_path / "autoencoder")
    val = train.train_and_evaluate(th.autoencoder_config(
        tiny_fma[0], **{"gan.classifier_workdir": classifiers[0]}), workdir)
    assert th.saved_steps(workdir) == [2, 4]
    assert val["val_change_db"] > 0.0 and 0.0 < val["val_chroma_kept"] <= 1.0
    d_params = th.params(workdir, 4, "d_params", gan.GanState)
    assert d_params and all(k.startswith(("/conv/", "/dense/")) for k in d_params)
    method = generator.GeneratorMethod(workdir, sharding.make_mesh(), vocoder.VocoderConfig(n_iter=2))
    assert method.name.startswith("autoencoder_")
    audio = jnp.asarray(np.random.default_rng(0).normal(scale=0.1, size=(8, 22_050)),
                        jnp.float32)
    source = jnp.zeros(8, jnp.int32)
    to_source, to_other = (np.asarray(method(audio, source, target))
                           for target in (source, source + 1))
    assert np.isfinite(to_other).all() and np.abs(to_other - to_source).max() > 1e-4


def test_conversions_are_bounded_above_the_input(gan8):
    """A blown-up generator (every weight x 1000) converts to at most MAX_BOOST_DB above the
    input's loudest bin, so the vocoder's dB -> power stays finite."""
    run = rundir.restore(gan8[0], sharding.make_mesh(), tasks.create, "latest", items=("generator_ema",),
                       expect_tasks=("stargan",))
    loud = run.state.replace(g_ema=jax.tree.map(lambda p: p * 1e3, run.state.g_ema))
    x = jax.random.normal(jax.random.key(0), (8, 21, 64, 1))
    target = jnp.arange(8, dtype=jnp.int32)
    bound = x.max(axis=(1, 2, 3)) + gan.MAX_BOOST_DB / run.task.gan.db_scale
    assert (run.task.generate(loud.g_ema, x, target).max(axis=(1, 2, 3)) > bound).any()
    assert (run.task.convert(loud, x, target).max(axis=(1, 2, 3)) <= bound + 1e-6).all()


@pytest.mark.slow
def test_gan_resumed_on_one_device_matches_eight_devices_uninterrupted(gan8, tiny_fma, classifiers,
                                                                       tmp_path):
    """SIGKILL after step 2, resume on 1 device: parameters equal the 8-device run's at step 4
    (both the device count and the resume must be exact for this to hold)."""
    extra = {"gan.classifier_workdir": classifiers[0]}
    proc = th.cli(str(tmp_path), tiny_fma[0], devices=1, wait=False, gan=True, **extra)
    deadline = time.time() + 300
    while 2 not in th.saved_steps(str(tmp_path)) and time.time() < deadline:
        time.sleep(0.2)
    time.sleep(0.5)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert 4 not in th.saved_steps(str(tmp_path)), "killed too late to test resuming"
    code, out = th.cli(str(tmp_path), tiny_fma[0], devices=1, gan=True, **extra)
    assert code == 0, out[-3000:]
    assert "Resuming from step 2" in out
    for field in ("g_params", "d_params", "g_ema"):
        want, got = (th.params(d, 4, field, gan.GanState) for d in (gan8[0], str(tmp_path)))
        compared = [k for k in want if not k.endswith(NORMED_BIASES)]
        assert len(compared) > len(want) // 2
        diff = th.max_abs_diff({k: want[k] for k in compared}, {k: got[k] for k in compared})
        assert diff <= TOLERANCE, (field, diff)


def test_gan_nan_stops_and_keeps_the_last_good_checkpoint(tiny_fma, classifiers, tmp_path):
    config = th.gan_config(tiny_fma[0], **{"gan.g_learning_rate": 1e15,
                                           "checkpoint_every_steps": 1, "total_steps": 12,
                                           "eval_every_steps": 12,
                                           "gan.classifier_workdir": classifiers[0]})
    with pytest.raises(train.NonFiniteLossError, match=r"at step (\d+)") as err:
        train.train_and_evaluate(config, str(tmp_path))
    bad_step = int(err.value.args[0].split("at step ")[1].split(";")[0])
    kept = th.saved_steps(str(tmp_path))
    assert kept and max(kept) < bad_step
    assert all(np.isfinite(v).all()
               for v in th.params(str(tmp_path), max(kept), "g_params", gan.GanState).values())


def _run(module, *args, devices=1):
    env = dict(os.environ, XLA_FLAGS=f"--xla_force_host_platform_device_count={devices}",
               TF_CPP_MIN_LOG_LEVEL="2")
    proc = subprocess.run([sys.executable, "-m", module, *args], cwd=th.ROOT, env=env,
                          capture_output=True, text=True, timeout=600, check=False)
    return proc.returncode, proc.stdout + proc.stderr


def test_transfer_cli_converts_any_length_and_refuses_bad_input(gan8, classifiers, tmp_path):
    workdir = gan8[0]
    song = str(tmp_path / "song.wav")
    t = np.arange(60_000) / 44_100  # 1.36 s at another rate: resampled to the run's 22.05 kHz
    soundfile.write(song, 0.3 * np.sin(2 * np.pi * 220 * t), 44_100)
    out = str(tmp_path / "out.wav")
    code, log = _run("jaxgenre.transfer", "--workdir", workdir, "--input", song, "--to", "Rock",
                     "--output", out, "--classifier", classifiers[1], "--gl_iters", "4")
    assert code == 0, log[-3000:]
    audio, rate = soundfile.read(out)
    assert rate == 22050 and abs(len(audio) - 30_000) <= 1 and np.isfinite(audio).all()
    assert os.path.exists(str(tmp_path / "out.png")) and "input genre (by" in log

    code, log = _run("jaxgenre.transfer", "--workdir", workdir, "--input", song, "--to", "all",
                     "--output", str(tmp_path / "all"), "--gl_iters", "2")
    assert code == 0, log[-3000:]
    assert len([f for f in os.listdir(tmp_path / "all") if f.endswith(".wav")]) == 8

    empty, broken = str(tmp_path / "empty.wav"), str(tmp_path / "broken.mp3")
    soundfile.write(empty, np.zeros(0), 22050)
    with open(broken, "wb") as f:
        f.write(b"not audio at all")
    cases = [(["--workdir", workdir, "--to", "Polka", "--input", song],
              "Unknown genre 'Polka' for --to; valid: "),
             (["--workdir", workdir, "--to", "Rock", "--input", empty], "holds no audio samples"),
             (["--workdir", workdir, "--to", "Rock", "--input", broken], "Cannot read"),
             (["--workdir", workdir, "--to", "Rock", "--input", str(tmp_path / "missing.wav")],
              "no such file"),
             # a classifier where a generator is expected
             (["--workdir", classifiers[0], "--input", song, "--to", "Rock"],
              "is a 'classifier' run where a stargan or autoencoder run")]
    results = th.cli_exits("jaxgenre.tools.transfer", [args for args, _ in cases])
    for (_, message), (code, log) in zip(cases, results, strict=True):
        assert code != 0 and message in log and "Traceback" not in log, log[-2000:]
    code, log = _run("jaxgenre.evaluate_transfer", "--method", "identity", "--judge", workdir,
                     "--output_dir", str(tmp_path / "eval"))
    assert code != 0 and "is a 'stargan' run where a classifier run is needed" in log


def test_the_transfer_evaluator_takes_a_gan_run_as_a_method(gan8, classifiers, tmp_path):
    from tests.test_transfer import FAST
    out = str(tmp_path / "eval")
    # one process: judged by a classifier it never saw, then by the one in its loss
    (code, log), (refused, refusal) = th.cli_exits("jaxgenre.tools.evaluate_transfer", [
        ["--method", gan8[0], "--judge", classifiers[1], "--method_checkpoint", "2",
         "--output_dir", out, *FAST],
        ["--method", gan8[0], "--judge", classifiers[0], "--output_dir", out, *FAST]], devices=2)
    assert code == 0, log[-3000:]
    name = f"stargan_{os.path.basename(gan8[0])}@2"  # a step other than the best is named
    result = th.read_json(os.path.join(out, f"{name}_test.json"))
    assert result["num_pairs"] == 8 * 7 and 0.0 <= result["target_accuracy"] <= 1.0
    with open(os.path.join(out, "transfer_test.md")) as f:
        table = f.read()
    assert all(f"| {m} |" in table for m in ("identity", "random_target", "eq", name))
    # the classifier in the GAN's loss cannot judge it
    assert refused != 0 and "was used to train or select" in refusal
