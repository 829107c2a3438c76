"""The StarGAN trained by the same trainer (devices, resume, NaN; processes in
test_multihost.py; its parts in test_gan_parts.py); the transfer CLI and the evaluator taking a
GAN run; bad input."""
import os
import signal
import time

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxgenre import tasks, train
from jaxgenre.core import sharding
from jaxgenre.run import rundir
from jaxgenre.tasks import gan
from tests import train_helpers as th

pytestmark = pytest.mark.transfer  # their own tier: .ci/run, docs/testing.md

TOLERANCE = 1e-4  # float32, 8 devices vs 1: two optimizers and R1's second derivatives
# The generator's convolution biases that feed only an instance norm (which removes any
# per-channel constant): their gradients are round-off, which Adam scales to steps of up to the
# learning rate whatever their size, so they carry nothing to compare between runs.
NORMED_BIASES = ("/down1/bias/value", "/down2/bias/value", "/up1/bias/value",
                 "/up2/bias/value", "/conv1/bias/value")


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
    # by-clip standard errors of 8 clips: per-clip accuracies lie in [0, 1], so at most 0.5 / sqrt(7)
    assert 0.0 <= val["val_chroma_kept_se"] and 0.0 <= val["val_target_accuracy_se"] <= 0.5 / 7 ** 0.5
    d_rest = th.params(workdir, 4, "d_rest", gan.GanState)
    assert d_rest and all(k.endswith("/u/value") for k in d_rest)  # spectral-norm vectors


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


@pytest.mark.slow  # a GAN run of its own (28 s); test_train's classifier NaN run is the fast check
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


@pytest.mark.slow  # three transfer evaluations end to end
def test_the_transfer_evaluator_takes_a_gan_run_as_a_method(gan8, classifiers, tmp_path):
    from tests.test_transfer import FAST
    out, out_two = str(tmp_path / "eval"), str(tmp_path / "eval_two_targets")
    genres = th.read_json(os.path.join(classifiers[1], "dataset_info.json"))["class_names"]
    # one process: judged by a classifier it never saw (all targets, then two), then by the
    # one in its loss
    (code, log), (code_two, log_two), (refused, refusal) = th.cli_exits(
        "jaxgenre.tools.evaluate_transfer", [
            ["--method", gan8[0], "--judge", classifiers[1], "--method_checkpoint", "2",
             "--output_dir", out, *FAST],
            ["--method", gan8[0], "--judge", classifiers[1], "--method_checkpoint", "2",
             "--targets", f"{genres[0]},{genres[3]}", "--output_dir", out_two, *FAST],
            ["--method", gan8[0], "--judge", classifiers[0], "--output_dir", out, *FAST]],
        devices=2)
    assert code == 0, log[-3000:]
    assert code_two == 0, log_two[-3000:]
    name = f"stargan_{os.path.basename(gan8[0])}@2"  # a step other than the best is named
    result = th.read_json(os.path.join(out, f"{name}_test.json"))
    assert result["num_pairs"] == 8 * 7
    hits = result["target_accuracy"] * result["num_pairs"]
    assert hits == pytest.approx(round(hits), abs=1e-6)  # a count of judged pairs
    two = th.read_json(os.path.join(out_two, f"{name}_test.json"))
    assert {p["target"] for p in two["per_pair"].values()} == {genres[0], genres[3]}
    assert two["num_pairs"] == sum(p["num_pairs"] for p in two["per_pair"].values()) < 8 * 7
    for key, pair in two["per_pair"].items():  # the same pairs as in the run on every target
        assert pair["num_pairs"] == result["per_pair"][key]["num_pairs"], key
        assert pair["target_accuracy"] == pytest.approx(
            result["per_pair"][key]["target_accuracy"]), key
    with open(os.path.join(out, "transfer_test.md")) as f:
        table = f.read()
    assert all(f"| {m} |" in table for m in ("identity", "random_target", "eq", name))
    # the classifier in the GAN's loss cannot judge it
    assert refused != 0 and "was used to train or select" in refusal


@pytest.mark.slow  # three restores of the GAN and its vocoder
def test_strength_zero_is_the_identity_codec_and_strength_scales_the_change(gan8):
    from jaxgenre.audio import vocoder
    from jaxgenre.transfer import generator, methods
    mesh = sharding.make_mesh()
    vcfg = vocoder.VocoderConfig(n_iter=4, nnls_steps=4)
    rng = np.random.default_rng(0)
    t = np.arange(22_050) / 22_050
    audio = np.stack([0.2 * np.sin(2 * np.pi * (200 + 50 * i) * t) + 0.02 * rng.normal(size=t.size)
                      for i in range(jax.device_count())]).astype(np.float32)
    x = sharding.from_host(audio, mesh)
    target = sharding.from_host(np.arange(jax.device_count(), dtype=np.int32) % 8, mesh)
    by_strength = {s: generator.GeneratorMethod(gan8[0], mesh, vcfg, strength=s)
                   for s in (0.0, 0.5, 1.0)}
    assert by_strength[0.5].name.endswith("@strength0.5") and "@" not in by_strength[1.0].name
    identity = methods.Identity(by_strength[0.0].codec)(x, target, target)
    np.testing.assert_allclose(np.asarray(by_strength[0.0](x, target, target)),
                               np.asarray(identity), atol=1e-4)
    db = {s: np.asarray(m.convert_db(x, target)) for s, m in by_strength.items()}
    assert np.abs(db[1.0] - db[0.0]).max() > 0.1  # the generator changes something
    np.testing.assert_allclose(db[0.5] - db[0.0], 0.5 * (db[1.0] - db[0.0]), atol=1e-3)
    with pytest.raises(ValueError, match="strength 1.5 is outside"):
        generator.GeneratorMethod(gan8[0], mesh, vcfg, strength=1.5)


@pytest.mark.slow  # the GAN restored, long audio vocoded
def test_long_audio_is_converted_in_one_vocoder_pass_without_seams(gan8):
    """A clip within one window is the plain conversion of the whole clip; a steady tone
    several windows long comes out steady across the windows' seams."""
    from jaxgenre.audio import vocoder
    from jaxgenre.transfer import generator
    mesh = sharding.make_mesh()
    method = generator.GeneratorMethod(gan8[0], mesh, vocoder.VocoderConfig(n_iter=8))
    rate, n = 22_050, jax.device_count()
    t = np.arange(int(1.5 * rate)) / rate
    short = (0.3 * np.sin(2 * np.pi * 330 * t)).astype(np.float32)
    whole = method(sharding.from_host(np.repeat(short[None], n, axis=0), mesh),
                   *[sharding.from_host(np.full(n, 2, np.int32), mesh)] * 2)
    np.testing.assert_allclose(method.convert_many(short[None], [2], window_seconds=2.0)[0],
                               np.asarray(whole)[0], atol=1e-4)

    t = np.arange(int(7.3 * rate)) / rate  # 3.65 windows of 2 s: six seams
    tone = (0.3 * np.sin(2 * np.pi * 330 * t)).astype(np.float32)
    out = method.convert_many(tone[None], [2], window_seconds=2.0)[0]
    assert out.shape == tone.shape and np.isfinite(out).all()
    frame = rate // 20  # 50 ms
    rms = np.sqrt(np.mean(out[:len(out) // frame * frame].reshape(-1, frame) ** 2, axis=1))
    inner = rms[4:-4]  # the first and last 200 ms meet the file's edges
    spread_db = 20 * np.log10(inner.max() / inner.min())
    assert spread_db < 1.0, spread_db
