"""The style-transfer tasks' classifiers and the autoencoder: the frozen loss classifier hears
what its run was trained on, an ensemble of them is their mean probability, and the
autoencoder trains end to end and converts."""
import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from jaxgenre import train
from jaxgenre.audio import frontend, vocoder
from jaxgenre.core import sharding
from jaxgenre.inference import judge
from jaxgenre.tasks import classifier, gan
from jaxgenre.transfer import generator
from tests import train_helpers as th


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


@pytest.mark.transfer  # two classifier runs restored
def test_a_frozen_ensemble_is_its_members_mean_probability(classifiers):
    """'RUN_A,RUN_B' as the loss classifier: softmax of its logits is the members' mean
    probability, its argmax and cross-entropy those of that mean; one run alone stays a
    FrozenClassifier."""
    mesh = sharding.make_mesh()
    run = judge.restore(classifiers[0], mesh)
    names = run.data.class_names
    ensemble = judge.frozen(",".join(classifiers), mesh, run.task.mel, names)
    assert isinstance(ensemble, judge.FrozenEnsemble)
    assert isinstance(judge.frozen(classifiers[0], mesh, run.task.mel, names),
                      judge.FrozenClassifier)
    rng = np.random.default_rng(0)
    audio = jnp.asarray(rng.normal(size=(8, 22_050)) * 3000, jnp.int16)
    db = frontend.log_mel(audio, run.task.mel)
    members = [jax.nn.softmax(m.logits(m.params, db)) for m in ensemble.members]
    assert float(jnp.abs(members[0] - members[1]).max()) > 1e-3  # two different classifiers
    got = jax.nn.softmax(ensemble.logits(ensemble.params, db))
    np.testing.assert_allclose(got, (members[0] + members[1]) / 2, atol=1e-6)
    augmented = ensemble.logits(ensemble.params, db, jax.random.key(0))
    assert augmented.shape == got.shape and bool(jnp.isfinite(augmented).all())



@pytest.mark.slow  # a whole training run and a conversion
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
