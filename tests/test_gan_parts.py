"""Style transfer's parts on their own: spectral norm, the generator and discriminator, the
adversarial and confusion losses against formulas written out, and the StarGAN step with
n_critic (the generator and its average move on generator steps only)."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from jaxgenre import tasks, train
from jaxgenre.core import sharding
from jaxgenre.data import input_pipeline, spec, spectra
from jaxgenre.evaluators import transfer_proxy
from jaxgenre.models import stargan
from jaxgenre.models.ops import spectral_norm
from jaxgenre.tasks import gan, gan_losses
from jaxgenre.transfer import methods
from tests import train_helpers as th

pytestmark = pytest.mark.transfer  # their own tier: .ci/run, docs/testing.md


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



def test_the_eq_prior_starts_the_generator_at_the_eq_baseline_and_converting_back_undoes_it():
    """At eq_prior 1 the untrained generator is the eq baseline's edit (`methods._equalise`, in
    dB); converting back to the source genre after the prior's shift lands where the prior takes
    the input itself; at eq_prior 0.5 the LTAS moves halfway."""
    scale, offset = 40.0, -20.0
    g = stargan.Generator(8, rngs=nnx.Rngs(0), channels=4, encoder_blocks=1, decoder_blocks=1,
                          style_dim=8, eq_prior=1.0, n_mels=30, db_scale=scale)
    g.genre_ltas.value = jax.random.normal(jax.random.key(1), (8, 30)) * 0.3
    x = jax.random.normal(jax.random.key(2), (2, 37, 30, 1)) * 0.5
    source, target = jnp.array([0, 2]), jnp.array([3, 5])
    eq_db = methods._equalise(x[..., 0] * scale + offset, target,
                              genre_ltas=g.genre_ltas.value * scale + offset)
    assert float(jnp.abs(g(x, target)[..., 0] * scale + offset - eq_db).max()) < 1e-3
    there = g.prior(x, target)
    assert float(jnp.abs(g.prior(there, source) - g.prior(x, source)).max()) < 1e-5
    g.eq_prior = 0.5
    halfway = stargan.ltas_units(g.prior(x, target)[..., 0], scale)
    expected = 0.5 * (stargan.ltas_units(x[..., 0], scale) + g.genre_ltas.value[target])
    assert float(jnp.abs(halfway - expected).max()) < 1e-2  # power means: not exactly linear
    assert float(jnp.abs(halfway - stargan.ltas_units(x[..., 0], scale)).max()) > 0.1


@pytest.mark.slow  # one StarGAN step compiled
def test_the_eq_prior_is_set_from_the_training_split_and_its_shift_costs_no_cycle_or_identity(
        tiny_fma):
    """warm_start puts each genre's mean training spectrum (the eq baseline's) into G and its
    average; the first step's cycle and identity terms, on the untrained network, are zero:
    they measure the network's change, not the prior's shift."""
    config = th.gan_config(tiny_fma[0], **{"model.eq_prior": 1.0})
    mesh = sharding.make_mesh()
    task = gan.StarGanTask(config, spec.DataSpec("fma/small", tuple(f"g{i}" for i in range(8)),
                                                 22_050, 22_050), mesh)
    _, state_sharding = sharding.abstract_state(task.init, mesh)
    state = task.warm_start(jax.jit(task.init, out_shardings=state_sharding)())
    builder = input_pipeline.load_builder("fma/small", tiny_fma[0])
    expected = (spectra.genre_ltas(builder, "train", task.mel, spectra.CLIPS_PER_GENRE)
                - config.gan.db_offset) / config.gan.db_scale
    for params in (state.g_params, state.g_ema):
        np.testing.assert_allclose(np.asarray(params["genre_ltas"].value), expected, atol=1e-5)
    rng = np.random.default_rng(0)
    batch = {"audio": jnp.asarray(rng.integers(-8000, 8000, (8, 22_050)), jnp.int16),
             "label": jnp.arange(8, dtype=jnp.int32)}
    step = tasks.jit_update_cycle(task, state_sharding, mesh)[0]  # donates, as the trainer
    _, metrics = step(state, batch)
    assert float(metrics["identity_l1"]) == 0.0  # the head starts at zero
    assert float(metrics["cycle_l1"]) < 1e-4
    assert float(metrics["chroma_kept"]) < 0.999  # the prior's EQ did change the spectrum
    assert np.isfinite(float(metrics["g_loss"])) and float(metrics["g_grad_norm"]) > 0


@pytest.mark.slow  # a CRNN trained for 2 steps, the proxy compiled
def test_a_recurrent_classifier_scores_the_proxy_and_the_identity_generator_meets_its_formula(
        tiny_fma, tmp_path):
    """A CRNN scores validation (its GRU's scan once refused to run inside the proxy's map over
    targets). The untrained generator is the identity, so a clip is heard as its one top genre
    whatever the target: target accuracy is exactly (1 - source accuracy) / (C - 1), which holds
    only if every verdict is matched to its own clip and target."""
    workdir = str(tmp_path / "crnn")
    train.train_and_evaluate(th.crnn_config(tiny_fma[0], total_steps=2, eval_every_steps=2,
                                            checkpoint_every_steps=2), workdir)
    builder = input_pipeline.load_builder("fma/small", tiny_fma[0])
    mesh = sharding.make_mesh()
    task = gan.StarGanTask(th.gan_config(tiny_fma[0]), spec.DataSpec(
        "fma/small", tuple(builder.info.features["label"].names),
        builder.info.features["audio"].sample_rate, 22_050), mesh)
    _, state_sharding = sharding.abstract_state(task.init, mesh)
    state = jax.jit(task.init, out_shardings=state_sharding)()
    scores = transfer_proxy.ProxyEvaluator(task, state_sharding, builder, "validation", 8, mesh,
                                           clips=8, classifier_workdir=workdir,
                                           num_samples=0).run(state)
    assert scores["num_clips"] == 8 and scores["num_pairs"] == 8 * 7
    assert scores["target_accuracy"] == pytest.approx((1 - scores["source_accuracy"]) / 7,
                                                      abs=1e-6)
    # By clip, target accuracy is (1 - source correct) / 7: its standard error is the standard
    # deviation (ddof 1) of a 0/1 sample of 8 with mean p, divided by 7 * sqrt(8); every clip
    # keeps its harmony.
    p = scores["source_accuracy"]
    assert scores["target_accuracy_se"] == pytest.approx(
        np.sqrt(8 / 7 * p * (1 - p)) / 7 / np.sqrt(8), abs=1e-6)
    assert 0.0 <= scores["chroma_kept_se"] < 1e-4
    assert 0.9999 < scores["chroma_kept"] <= 1.0 + 1e-6 and scores["change_db"] == 0.0


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



def test_confusion_loss_is_cross_entropy_to_uniform_and_bounded_below():
    logits = jax.random.normal(jax.random.key(0), (3, 5)) * 4.0
    log_p = logits - np.log(np.exp(np.asarray(logits)).sum(-1, keepdims=True))
    assert float(gan_losses.confusion_loss(logits)) == pytest.approx(float(-log_p.mean()),
                                                                     rel=1e-5)
    uniform, confidently_wrong = jnp.zeros((2, 5)), jnp.array([[20.0, 0, 0, 0, 0]] * 2)
    assert float(gan_losses.confusion_loss(uniform)) == pytest.approx(np.log(5))
    assert float(gan_losses.confusion_loss(confidently_wrong)) > np.log(5) + 5



@pytest.mark.slow  # two StarGAN steps compiled (wgan_gp)
def test_n_critic_updates_the_generator_on_its_steps_only_and_its_average_counts_them(tiny_fma):
    """wgan_gp with n_critic 2, its steps cycled as the trainer does: G (and its average) moves
    on steps 0 and 2 only, the D-only steps compute no G loss, and the average's warm-up counts
    generator updates."""
    config = th.gan_config(tiny_fma[0], **{"gan.loss": "wgan_gp", "gan.n_critic": 2,
                                           "gan.r1_weight": 0.0, "gan.ema_decay": 0.9})
    task = gan.StarGanTask(config, spec.DataSpec("fma/small", tuple(f"g{i}" for i in range(8)),
                                                 22_050, 22_050), sharding.make_mesh())
    cycle = [jax.jit(fn) for fn in task.train_steps()]
    assert len(cycle) == 2
    state = jax.jit(task.init)()
    rng = np.random.default_rng(0)
    batch = {"audio": jnp.asarray(rng.integers(-8000, 8000, (8, 22_050)), jnp.int16),
             "label": jnp.arange(8, dtype=jnp.int32)}
    expected_ema, g_updates = state.g_ema, 0
    for i in range(4):
        before = state.g_params
        state, metrics = cycle[i % len(cycle)](state, batch)
        moved = th.tree_max_abs_diff(before, state.g_params)
        assert np.isfinite(float(metrics["d_loss"]))
        if i % 2:
            assert moved == 0.0 and "g_loss" not in metrics
        else:
            assert moved > 0.0 and float(metrics["g_loss"]) != 0.0
            rate = min(0.9, (1 + g_updates) / (10 + g_updates))
            expected_ema = jax.tree.map(lambda e, p, r=rate: r * e + (1 - r) * p, expected_ema,
                                        state.g_params)
            g_updates += 1
    assert th.tree_max_abs_diff(expected_ema, state.g_ema) < 1e-6


@pytest.mark.slow  # two StarGAN steps compiled
def test_a_step_with_diff_augment_and_the_onset_term_trains_d_on_augmented_views(tiny_fma):
    """DiffAugment on, with R1 and the onset term: every loss finite, both networks get a
    gradient, and D's loss is not the one it has on the plain inputs (it saw augmented views)."""
    def step(policy):
        config = th.gan_config(tiny_fma[0], **{"gan.diff_augment": policy, "gan.r1_weight": 1.0,
                                               "gan.onset_weight": 1.0})
        task = gan.StarGanTask(config, spec.DataSpec(
            "fma/small", tuple(f"g{i}" for i in range(8)), 22_050, 22_050), sharding.make_mesh())
        rng = np.random.default_rng(0)
        batch = {"audio": jnp.asarray(rng.integers(-8000, 8000, (8, 22_050)), jnp.int16),
                 "label": jnp.arange(8, dtype=jnp.int32)}
        return jax.jit(task.train_step)(jax.jit(task.init)(), batch)[1]

    augmented, plain = step("roll,cutout,gain"), step("")
    for key in ("d_loss", "g_loss", "onset_l1", "d_grad_norm", "g_grad_norm"):
        assert np.isfinite(float(augmented[key])), key
    assert float(augmented["d_grad_norm"]) > 0 and float(augmented["g_grad_norm"]) > 0
    assert abs(float(augmented["d_loss"]) - float(plain["d_loss"])) > 1e-4


def test_onset_envelope_term_ignores_level_colour_and_onset_strength_and_sees_moved_onsets():
    """Zero for the input itself, a louder copy and one with a new spectral tilt (the dB flux);
    near zero for onsets twice as strong (the normalisation); clearly above zero when the
    onsets move, and finite for silence."""
    frames = jnp.arange(64)
    hits = jnp.where(frames % 16 == 0, 20.0, 0.0)[None, :, None]  # a beat every 16 frames
    x_db = hits + jnp.zeros((2, 64, 32)) - 40.0
    tilt = jnp.linspace(-10.0, 10.0, 32)[None, None, :]
    assert float(gan_losses.onset_envelope_l1(x_db, x_db).max()) == 0.0
    assert float(gan_losses.onset_envelope_l1(x_db, x_db + 6.0 + tilt).max()) < 1e-5
    doubled = 2.0 * (x_db + 40.0) - 40.0  # the same beats, 40 dB above the floor, not 20

    def flux(db):
        return jax.nn.relu(jnp.diff(db, axis=1)).mean(axis=-1)
    unnormalised = jnp.abs(flux(doubled) - flux(x_db)).mean()  # 20 dB at 4 of 63 frames
    assert float(gan_losses.onset_envelope_l1(x_db, doubled).max()) < 0.05 < float(unnormalised)
    moved = jnp.roll(x_db, 8, axis=1)  # off the beat
    assert float(gan_losses.onset_envelope_l1(x_db, moved).min()) > 0.5
    silent = jnp.full((1, 64, 32), -80.0)
    assert np.isfinite(float(gan_losses.onset_envelope_l1(silent, x_db[:1]).max()))


def test_an_unknown_diff_augment_op_is_refused_with_the_valid_ones():
    config = th.gan_config("/nowhere")
    config.gan.diff_augment = "roll, cutout"
    gan.StarGanTask.check_config(config)  # spaces after commas are fine
    config.gan.diff_augment = "roll,flip"
    with pytest.raises(ValueError, match="Unknown gan.diff_augment 'flip'; valid: roll, cutout, gain"):
        gan.StarGanTask.check_config(config)


def test_the_realmusic_preset_is_the_recipe_the_dev_set_results_were_measured_with():
    from jaxgenre.configs import stargan as stargan_config
    # docs/benchmarks.md's command for the chosen runs ("Fifteenth session"), flag by flag
    measured = stargan_config.get_config("demo")
    measured.data.name, measured.total_steps = "fma/small", 4000
    measured.eval_every_steps = measured.checkpoint_every_steps = 500
    measured.gan.diff_augment, measured.gan.onset_weight = "roll,cutout,gain", 4.0
    measured.model.eq_prior, measured.gan.chroma_weight = 0.65, 4.0
    preset = stargan_config.get_config("realmusic")
    assert preset.to_dict() == measured.to_dict()
    tasks.check_config(preset)
    with pytest.raises(ValueError, match="not both"):
        stargan_config.get_config("demo,realmusic")
    with pytest.raises(ValueError, match="valid: demo, realmusic, hinge"):
        stargan_config.get_config("real")


def test_conversion_gives_the_generator_the_clips_own_content_beyond_its_time_edges():
    """The generator's convolutions zero-pad the log-mel's time edges, where the demo GAN
    learned bursts (+28.7 dB); `convert` mirrors CONTEXT_FRAMES of the input beyond each edge.
    On a time-stationary input a random generator's edge frames then come out near its
    interior ones, where without the context they do not."""
    config = th.gan_config("/nowhere")
    task = gan.StarGanTask(config, spec.DataSpec("fma/small", tuple(f"g{i}" for i in range(8)),
                                                 22_050, 22_050), sharding.make_mesh())
    state = jax.jit(task.init)()
    leaves, treedef = jax.tree.flatten(state.g_ema)
    keys = jax.random.split(jax.random.key(0), len(leaves))
    noisy = jax.tree.unflatten(treedef, [p + 0.2 * jax.random.normal(k, p.shape)  # head too
                                         for p, k in zip(leaves, keys)])
    state = state.replace(g_ema=noisy)
    spectrum = jax.random.normal(jax.random.key(1), (1, 1, 64, 1))
    x = jnp.broadcast_to(spectrum, (8, 96, 64, 1))  # the same frame 96 times
    target = jnp.arange(8, dtype=jnp.int32)

    def edge_vs_middle(y):
        return float(jnp.abs(jnp.concatenate([y[:, :2], y[:, -2:]], 1) - y[:, 47:48]).max())
    without = edge_vs_middle(task.generate(state.g_ema, x, target))
    with_context = edge_vs_middle(task.convert(state, x, target))
    assert with_context < 0.3 * without, (with_context, without)
