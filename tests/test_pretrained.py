"""Fine-tuning from imported weights: the encoder starts equal to the import, the head fresh; a
linear probe moves only the head; imports that do not fit the config are refused by name."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx
from jaxgenre.configs import musicnn as musicnn_config

from jaxgenre import models, train
from jaxgenre.core import sharding
from jaxgenre.data import spec
from jaxgenre.pretrained import import_dir
from jaxgenre.tasks import classifier
from tests import train_helpers as th

_KWARGS = {"n_mels": 96, "num_filt_frontend": 0.1, "num_filt_midend": 8,
           "num_units_backend": 16, "dropout": 0.5}  # a small musicnn: seconds on a CPU
_FRONTEND = {"sample_rate": 22050, "n_fft": 512, "hop_length": 256, "n_mels": 96,
             "compress": "log10_1p", "log_gain": 10000.0}
_DATA = spec.DataSpec("fma/small", tuple(f"g{i}" for i in range(8)), 22050, 11025)


@pytest.fixture(scope="module")
def imported(tmp_path_factory) -> str:
    """An import directory as jaxgenre.import_weights writes it: a 50-tag musicnn whose every
    variable (BatchNorm statistics included) is random, so no value can match by chance."""
    model = models.get("musicnn")(50, **_KWARGS, rngs=nnx.Rngs(7))
    pure = nnx.to_pure_dict(nnx.state(model))
    rng = np.random.default_rng(0)
    pure = jax.tree.map(lambda x: rng.uniform(0.5, 1.5, x.shape).astype(np.float32), pure)
    out = str(tmp_path_factory.mktemp("import"))
    import_dir.save(out, pure, {"model": "musicnn", "model_kwargs": _KWARGS,
                                "frontend": _FRONTEND, "tags": [f"t{i}" for i in range(50)]})
    return out


def _config(data_dir, init_from, *args, **extra):
    c = musicnn_config.get_config(",".join(("demo", *args)))
    values = {**th.overrides(data_dir), "model.name": "musicnn", "frontend.n_mels": 96,
              "model.init_from": init_from, **{f"model.{k}": v for k, v in _KWARGS.items()},
              "data.crop_seconds": 0.5, "batch_size": 8, "eval_batch_size": 8,
              **extra}
    return th._apply(c, values)


def _flat(state) -> dict:
    """{'hidden/kernel': array, ...} of an nnx.State or a pure dict."""
    pure = nnx.to_pure_dict(state) if isinstance(state, nnx.State) else state
    return {path: np.asarray(v) for path, v in import_dir.flatten(pure).items()}


def _task_and_state(config):
    mesh = sharding.make_mesh()
    task = classifier.ClassifierTask(config, _DATA, mesh)
    _, state_sharding = sharding.abstract_state(task.init, mesh)
    return task, task.warm_start(jax.jit(task.init, out_shardings=state_sharding)())


def _steps(task, state, n=3):
    batch = {"audio": jnp.asarray(np.random.default_rng(1).integers(
        -8000, 8000, (8, 11025)), jnp.int16), "label": jnp.arange(8, dtype=jnp.int32)}
    step = jax.jit(task.train_step)
    for _ in range(n):
        state, _ = step(state, batch)
    return state


def test_encoder_starts_as_imported_and_the_head_fresh(imported, tiny_fma):
    _, state = _task_and_state(_config(tiny_fma[0], imported))
    want = _flat(import_dir.load(imported))
    params, rest = _flat(state.params), _flat(state.model_state)
    assert set(params) | set(rest) == set(want)
    for name, value in {**params, **rest}.items():
        if name.startswith("dense/"):
            assert value.shape[-1] == 8 and want[name].shape[-1] == 50  # 8 genres, not 50 tags
        else:
            np.testing.assert_array_equal(value, want[name], err_msg=name)
    np.testing.assert_array_equal(_flat(state.ema_params)["hidden/kernel"], want["hidden/kernel"])


def test_a_probe_moves_only_the_head_and_fine_tuning_all_but_the_frozen_front_end(imported, tiny_fma):
    task, state = _task_and_state(_config(tiny_fma[0], imported, "probe"))
    before = {**_flat(state.params), **_flat(state.model_state)}
    state = _steps(task, state)
    after = {**_flat(state.params), **_flat(state.model_state)}
    moved = {k for k in before if not np.array_equal(before[k], after[k])}
    assert moved == {"dense/kernel", "dense/bias"}  # frozen encoder and statistics

    task, state = _task_and_state(_config(tiny_fma[0], imported))  # front-end frozen
    before = _flat(state.params)
    after = _flat(_steps(task, state).params)
    moved = {k for k in before if not np.array_equal(before[k], after[k])}
    assert {"dense/kernel", "hidden/kernel", "midend/0/conv/kernel"} <= moved
    assert not {k for k in moved if k.split("/")[0] in ("input_bn", "timbral", "temporal")}
    assert task.learning_rates(50) == pytest.approx(
        {"learning_rate": float(task._lr(49)), "encoder_learning_rate": 0.1 * float(task._lr(49))})


def test_the_trainer_starts_from_the_import(imported, tiny_fma, tmp_path):
    config = _config(tiny_fma[0], imported, "probe", total_steps=2, eval_every_steps=2,
                     checkpoint_every_steps=2)
    train.train_and_evaluate(config, str(tmp_path))
    saved = {k.strip("/").removesuffix("/value"): v for k, v in th.params(str(tmp_path), 2).items()}
    want = _flat(import_dir.load(imported))
    np.testing.assert_array_equal(saved["hidden/kernel"], want["hidden/kernel"])
    assert saved["dense/kernel"].shape == (16, 8)


@pytest.mark.parametrize("override,message", [
    ({"frontend.n_mels": 64, "model.n_mels": 64}, r"frontend.n_mels 64 \(imported: 96\)"),
    ({"frontend.compress": "db"}, r"frontend.compress 'db' \(imported: 'log10_1p'\)"),
    ({"model.num_units_backend": 32}, r"model.num_units_backend 32 \(imported: 16\)"),
])
def test_imports_for_another_input_or_model_are_refused(imported, tiny_fma, override, message):
    config = _config(tiny_fma[0], imported, **override)
    with pytest.raises(import_dir.PretrainedError, match=message):
        _task_and_state(config)


def test_weights_of_another_model_are_refused(imported, tiny_fma):
    config = th.config(tiny_fma[0], **{"model.init_from": imported})
    with pytest.raises(import_dir.PretrainedError, match=r"model.name 'mfcc_cnn' \(the weights "
                                                         r"are 'musicnn'\)"):
        import_dir.check_config(config, 22050)


def test_unknown_modules_to_freeze_are_refused_listing_the_valid_ones(tiny_fma):
    config = _config(tiny_fma[0], None, **{"optim.freeze": ("timbral", "frontend")})
    with pytest.raises(ValueError, match=r"\['frontend'\].*valid: hidden, hidden_bn, input_bn, "
                                         "midend, pool_bn, temporal, timbral"):
        classifier.ClassifierTask(config, _DATA, sharding.make_mesh())


def test_a_variable_that_does_not_fit_is_named(imported, tiny_fma, tmp_path):
    with pytest.raises(import_dir.PretrainedError, match="not a directory written by"):
        import_dir.read_info(str(tmp_path))
    _, state = _task_and_state(_config(tiny_fma[0], None))
    bad = import_dir.load(imported)
    bad["hidden"]["kernel"] = bad["hidden"]["kernel"][:, :3]
    with pytest.raises(import_dir.PretrainedError, match=r"hidden/kernel \[.*\]: imported \["):
        import_dir.merge(jax.device_get(state.params), jax.device_get(state.model_state), bad,
                         "X")
