"""Knowledge distillation (`config.distill`): the loss, its wiring into the train step, and the
teachers a student refuses."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxgenre import tasks, train
from jaxgenre.core import sharding
from jaxgenre.run import rundir
from jaxgenre.tasks import classifier
from tests import train_helpers as th


@pytest.mark.parametrize("multi", [False, True])
def test_the_distillation_gradient_is_the_kl_divergences_times_t(multi):
    """d/ds [T^2 CE(p_t, softmax(s / T))] = T (softmax(s / T) - p_t) per clip (/ B for the
    mean; multi-label: per genre, / (B C))."""
    rng = np.random.default_rng(0)
    s, t = (jnp.asarray(rng.normal(size=(4, 5)) * 3, jnp.float32) for _ in range(2))
    temperature = 2.5
    p_t = jax.nn.sigmoid(t / temperature) if multi else jax.nn.softmax(t / temperature)
    grad = jax.grad(classifier.distillation_loss)(s, p_t, temperature, multi)
    p_s = jax.nn.sigmoid(s / temperature) if multi else jax.nn.softmax(s / temperature)
    count = s.size if multi else s.shape[0]
    np.testing.assert_allclose(grad, temperature * (p_s - p_t) / count, rtol=1e-5, atol=1e-7)
    # the student that matches the teacher is at the loss's minimum
    assert float(classifier.distillation_loss(t, p_t, temperature, multi)) < float(
        classifier.distillation_loss(s, p_t, temperature, multi))


@pytest.mark.slow  # two training runs
def test_a_student_learns_from_its_teacher_and_weight_zero_is_the_plain_run(
        tiny_fma, tiny_classifier, classifiers, tmp_path):
    """tiny_classifier is the plain run (seed 0, 4 steps); the same config with a teacher at
    weight 0 must train to the same weights, at weight 1 to others."""
    def student(name, weight):
        config = th.config(tiny_fma[0], total_steps=4, checkpoint_every_steps=4,
                           eval_every_steps=4, **{"distill.teacher_workdir": classifiers[1],
                                                  "distill.weight": weight})
        train.train_and_evaluate(config, str(tmp_path / name))
        return th.params(str(tmp_path / name), 4)
    plain = th.params(tiny_classifier, 4)
    assert th.max_abs_diff(student("weight0", 0.0), plain) <= 1e-6
    taught = student("weight1", 1.0)
    assert th.max_abs_diff(taught, plain) > 1e-4
    assert all(np.isfinite(v).all() for v in taught.values())


def test_a_teacher_trained_on_other_crops_or_a_gan_is_refused(tiny_fma, tiny_classifier):
    mesh = sharding.make_mesh()
    data = rundir.data_spec(tiny_classifier, rundir.load_config(tiny_classifier))
    config = th.config(tiny_fma[0], **{"distill.teacher_workdir": tiny_classifier,
                                       "data.crop_seconds": 2.0})
    with pytest.raises(ValueError, match=r"crop seconds 1.0 vs 2.0 \(teacher vs student\)"):
        tasks.create(config, data, mesh)
    with pytest.raises(ValueError, match="distill.weight 1.5 must be in"):
        tasks.check_config(th.config(tiny_fma[0], **{"distill.weight": 1.5}))


def test_at_weight_one_only_the_teacher_moves_the_student(tiny_fma, tiny_classifier):
    """The teacher's probabilities reach the update: at distill.weight 1 the labels change
    nothing and other teacher weights change the step; at 0.5 the labels count too."""
    mesh = sharding.make_mesh()
    data = rundir.data_spec(tiny_classifier, rundir.load_config(tiny_classifier))
    rng = np.random.default_rng(0)
    audio = jnp.asarray(rng.integers(-8000, 8000, (8, data.crop_samples)), jnp.int16)
    batches = [{"audio": audio, "label": jnp.asarray(rng.integers(0, 8, 8), jnp.int32)}
               for _ in range(2)]

    def steps(weight):
        """One step from the same fresh state: on batch A, on batch B (other labels), and on
        batch A with the teacher's weights scaled by 1.5."""
        config = th.config(tiny_fma[0], **{"distill.teacher_workdir": tiny_classifier,
                                           "distill.weight": weight,
                                           "optim.warmup_steps": 0})  # step 1 moves the weights
        task = tasks.create(config, data, mesh)
        state, step = jax.jit(task.init)(), jax.jit(task.train_step)
        return [step(state, batch, jax.tree.map(lambda x: x * scale, task.step_inputs()))
                for batch, scale in zip(batches + batches[:1], (1.0, 1.0, 1.5))]

    (a, metrics_a), (b, metrics_b), (other, _) = steps(1.0)
    assert th.tree_max_abs_diff(a.params, b.params) == 0.0
    assert float(metrics_a["label_loss"]) != float(metrics_b["label_loss"])
    assert float(metrics_a["loss"]) == float(metrics_a["distill_loss"])
    assert th.tree_max_abs_diff(a.params, other.params) > 0.0  # batch A, the teacher scaled
    (half_a, _), (half_b, _), _ = steps(0.5)
    assert th.tree_max_abs_diff(half_a.params, half_b.params) > 0.0

