"""What real runs meet: preemption, unreadable checkpoints, changed configs, failed evaluations,
bad sizes, a checkpoint deleted under `--watch`, a SLURM cluster, NaNs outside the loss."""
import json
import os
import pathlib
import shutil

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxgenre import train
from jaxgenre.core import sharding
from jaxgenre.data import input_pipeline, spec
from jaxgenre.evaluators import checkpoints, classification
from jaxgenre.run import config_versions, restarts, rundir
from jaxgenre.tasks import classifier
from tests import train_helpers as th

TOLERANCE = 1e-5  # as the SIGKILL resume test


@pytest.fixture(scope="module")
def plain_run(tiny_fma, tmp_path_factory):
    """4 steps on train+validation, checkpoints at 2 and 4, one evaluation at 4: no step is
    "best" (its validation clips were trained on), so both steps are kept by step."""
    workdir = str(tmp_path_factory.mktemp("plain_run"))
    train.train_and_evaluate(_plain_config(tiny_fma[0]), workdir)
    return workdir


def _plain_config(data_dir, **extra):
    return th.config(data_dir, **{"data.train_split": "train+validation", "total_steps": 4,
                                  "eval_every_steps": 4, **extra})


def _copy(workdir, tmp_path) -> str:
    out = str(tmp_path / "run")
    shutil.copytree(workdir, out)
    return out


def _corrupt(workdir: str, step: int, how: str, item: str) -> None:
    item = pathlib.Path(workdir) / "checkpoints" / str(step) / item
    if how == "truncated data file":
        biggest = max((p for p in item.rglob("*") if p.is_file()), key=lambda p: p.stat().st_size)
        os.truncate(biggest, biggest.stat().st_size // 3)
    else:  # empty _METADATA
        (item / "_METADATA").write_text("")


def test_train_on_validation_keeps_by_step_and_best_falls_back_to_latest(plain_run, caplog):
    assert th.saved_steps(plain_run) == [2, 4]
    job = checkpoints.CheckpointEvaluator(plain_run, "test")
    with caplog.at_level("WARNING"):
        result = job.evaluate("best")
    assert result["step"] == 4 and os.path.exists(os.path.join(plain_run, "eval", "test_4.json"))
    assert "(trained on train+validation, it keeps no best): using the latest, step 4" in caplog.text


def test_evaluate_prints_before_writing_and_takes_output_dir(plain_run, tmp_path, capsys):
    not_a_dir = tmp_path / "file"
    not_a_dir.write_text("")
    job = checkpoints.CheckpointEvaluator(plain_run, "test", output_dir=str(not_a_dir / "eval"))
    with pytest.raises(OSError, match="--output_dir"):
        job.evaluate("4")
    assert capsys.readouterr().out.strip().splitlines()[-1].startswith("accuracy:")
    checkpoints.CheckpointEvaluator(plain_run, "test", output_dir=str(tmp_path / "out")).evaluate("4")
    assert (tmp_path / "out" / "test_4.json").exists()


@pytest.mark.parametrize("how", ["truncated data file", "empty _METADATA"])
def test_evaluate_names_an_unreadable_checkpoint_and_the_steps_that_restore(plain_run, tmp_path,
                                                                           how):
    workdir = _copy(plain_run, tmp_path)
    _corrupt(workdir, 4, how, "ema")  # what evaluation reads
    with pytest.raises(rundir.RunError) as err:
        checkpoints.CheckpointEvaluator(workdir, "test").evaluate("latest")
    message = str(err.value)
    assert os.path.join("checkpoints", "4") in message and "Steps that restore: [2]" in message


def test_training_resumes_from_the_newest_readable_checkpoint_and_keeps_the_bad_one(
        plain_run, tiny_fma, tmp_path, caplog):
    workdir = _copy(plain_run, tmp_path)
    expected = th.params(workdir, 4)
    _corrupt(workdir, 4, "truncated data file", "model")
    with caplog.at_level("WARNING"):
        train.train_and_evaluate(_plain_config(tiny_fma[0]), workdir)
    assert "unreadable newer step(s) [4] moved to" in caplog.text
    assert (tmp_path / "run" / "unreadable_checkpoints" / "4" / "model").is_dir()
    assert th.saved_steps(workdir) == [2, 4]  # step 4 trained again from 2
    assert th.max_abs_diff(expected, th.params(workdir, 4)) <= TOLERANCE


@pytest.mark.parametrize("key,value", [("model.name", "resnet18"), ("optim.name", "sgd"),
                                       ("frontend.n_mels", 32), ("data.label", "genres")])
def test_a_restart_that_changes_the_state_or_input_is_refused_before_anything_is_written(
        plain_run, tiny_fma, tmp_path, key, value):
    workdir = _copy(plain_run, tmp_path)
    saved = (tmp_path / "run" / "config.json").read_text()
    extra = {"best_metric": "val_map"} if key == "data.label" else {}  # 8 classes either way
    with pytest.raises(restarts.RestartError, match=f"cannot resume \\({key}: "):
        train.train_and_evaluate(_plain_config(tiny_fma[0], **{key: value}, **extra), workdir)
    assert (tmp_path / "run" / "config.json").read_text() == saved
    assert th.saved_steps(workdir) == [2, 4]


@pytest.mark.parametrize("key,value", [("model.skip", False), ("gan.db_offset", -30.0),
                                       ("gan.db_scale", 20.0)])
def test_a_gan_restart_that_changes_what_the_weights_mean_is_refused(tiny_fma, tmp_path, key,
                                                                     value):
    """Keys that keep every shape but change what the saved generator computes."""
    saved = config_versions.with_added_keys(th.gan_config(tiny_fma[0]))
    rundir.write(str(tmp_path), saved, spec.DataSpec("fma/small", tuple("abcdefgh"), 22_050,
                                                     22_050), {})
    new = th.gan_config(tiny_fma[0], **{key: value})
    assert new.model.skip is not None and new.gan.db_offset is not None
    with pytest.raises(restarts.RestartError, match=f"cannot resume \\({key}: "):
        restarts.check(str(tmp_path), new, {}, 2, lambda config: {})
    assert restarts.check(str(tmp_path), th.gan_config(tiny_fma[0], total_steps=8), {}, 2,
                          lambda config: {}) == {"total_steps": (4, 8)}


@pytest.mark.parametrize("key", ["optim.learning_rate", "gan.g_learning_rate"])
def test_a_learning_rate_of_zero_or_below_is_refused_up_front(tiny_fma, key):
    make = th.gan_config if key.startswith("gan.") else th.config
    for value in (0.0, -0.01):
        with pytest.raises(ValueError, match=f"{key} must be positive, got {value}"):
            train.check_config(make(tiny_fma[0], **{key: value}))


def test_a_safe_restart_change_is_recorded_and_a_smaller_total_is_refused(plain_run, tiny_fma,
                                                                          tmp_path):
    workdir = _copy(plain_run, tmp_path)
    with pytest.raises(restarts.RestartError, match="already at step 4, past total_steps=2"):
        train.train_and_evaluate(_plain_config(tiny_fma[0], total_steps=2), workdir)
    train.train_and_evaluate(_plain_config(tiny_fma[0], total_steps=5, checkpoint_every_steps=5),
                             workdir)
    assert th.saved_steps(workdir)[-1] == 5
    change = json.loads((tmp_path / "run" / "config_changes.jsonl").read_text())
    assert change["resumed_from_step"] == 4
    assert change["changes"]["total_steps"] == {"saved": 4, "new": 5}
    assert th.read_json(os.path.join(workdir, "config.json"))["total_steps"] == 5


def test_added_keys_fill_only_what_a_config_lacks():
    from jaxgenre.configs import autoencoder, mfcc_cnn, stargan

    from jaxgenre import tasks
    old = mfcc_cnn.get_config("demo")
    with old.unlocked():
        del old.frontend.compress, old.optim.freeze, old.distill
    old.data.label = "genres"
    filled = config_versions.with_added_keys(old)
    assert filled.frontend.compress == "db" and list(filled.optim.freeze) == []
    assert filled.distill.teacher_workdir is None and filled.distill.weight == 0.5  # a section
    assert filled.data.label == "genres"  # a value the config has is kept
    assert "compress" not in old.frontend  # the caller's config is left as it was
    old_gan = stargan.get_config("demo")
    with old_gan.unlocked():
        del old_gan.gan.chroma_weight, old_gan.gan.onset_weight, old_gan.gan.diff_augment
    gan = config_versions.with_added_keys(old_gan)
    assert gan.gan.chroma_weight == 0.0 and gan.gan.onset_weight == 0.0  # the GAN's own keys
    assert gan.gan.diff_augment == ""
    tasks.check_config(gan)
    old_ae = autoencoder.get_config("demo")
    with old_ae.unlocked():
        del old_ae.gan.onset_weight, old_ae.gan.diff_augment
    tasks.check_config(config_versions.with_added_keys(old_ae))
    assert "init_from" not in gan.model and "optim" not in gan  # none of the classifier's
    assert "distill" not in gan


def test_a_run_saved_before_keys_were_added_resumes(plain_run, tiny_fma, tmp_path):
    workdir = _copy(plain_run, tmp_path)
    path = tmp_path / "run" / "config.json"
    saved = json.loads(path.read_text())
    for key in config_versions.ADDED_KEYS["classifier"]:
        section, leaf = key.split(".")
        del saved[section][leaf]
    for section in config_versions.ADDED_SECTIONS["classifier"]:
        del saved[section]
    path.write_text(json.dumps(saved))
    train.train_and_evaluate(_plain_config(tiny_fma[0], total_steps=5, checkpoint_every_steps=5),
                             workdir)
    change = json.loads((tmp_path / "run" / "config_changes.jsonl").read_text())
    assert list(change["changes"]) == ["checkpoint_every_steps", "total_steps"]


def test_watch_skips_a_step_deleted_before_it_was_read(plain_run, tmp_path, caplog):
    workdir = _copy(plain_run, tmp_path)
    job = checkpoints.CheckpointEvaluator(workdir, "validation")
    real_evaluate, seen = job.evaluate, []

    def evaluate(which):
        seen.append(which)
        if which == "2":  # what the trainer's manager does to a step neither latest nor best
            shutil.rmtree(os.path.join(workdir, "checkpoints", "2"))
        return real_evaluate(which)

    job.evaluate = evaluate
    with caplog.at_level("INFO"):
        job.watch(poll_seconds=0)
    assert seen == ["2", "4"] and "step 2 was deleted before it was read" in caplog.text


def test_a_failed_evaluation_keeps_that_steps_checkpoint(tiny_fma, tmp_path, monkeypatch):
    def fail(self, state):
        raise RuntimeError("evaluation crashed")

    monkeypatch.setattr(classification.ClassificationEvaluator, "run", fail)
    config = th.config(tiny_fma[0], total_steps=3, eval_every_steps=3, checkpoint_every_steps=10)
    with pytest.raises(RuntimeError, match="evaluation crashed"):
        train.train_and_evaluate(config, str(tmp_path))
    assert th.saved_steps(str(tmp_path)) == [3]


def test_a_nan_in_any_metric_stops_training(tiny_fma, tmp_path, monkeypatch):
    """The gradient norm overflows while the loss is still finite: stop at that step."""
    step_fn = classifier.ClassifierTask.train_step

    def poisoned(self, state, batch):
        new_state, metrics = step_fn(self, state, batch)
        bad = jnp.where(state.step >= 2, jnp.inf, metrics["grad_norm"])
        return new_state, {**metrics, "grad_norm": bad}

    monkeypatch.setattr(classifier.ClassifierTask, "train_step", poisoned)
    config = th.config(tiny_fma[0], total_steps=6, checkpoint_every_steps=1, eval_every_steps=10)
    with pytest.raises(train.NonFiniteLossError, match="Grad_norm is inf at step 3"):
        train.train_and_evaluate(config, str(tmp_path))
    assert th.saved_steps(str(tmp_path))[-1] == 2


@pytest.mark.parametrize("key,value,message", [
    ("batch_size", 0, "batch_size must be positive"),
    ("batch_size", -8, "batch_size must be positive"),
    ("eval_batch_size", 0, "eval_batch_size must be positive"),
])
def test_non_positive_batch_sizes_are_refused_up_front(tiny_fma, key, value, message):
    with pytest.raises(ValueError, match=message):
        train.check_config(th.config(tiny_fma[0], **{key: value}))


def test_a_crop_longer_than_the_stored_clips_is_refused_up_front(tiny_fma, tmp_path):
    with pytest.raises(ValueError, match=r"data.crop_seconds=31.0 is longer than the clips of "
                                         r"fma/small \(30 s stored\)"):
        train.train_and_evaluate(th.config(tiny_fma[0], **{"data.crop_seconds": 31.0}),
                                 str(tmp_path))
    assert not os.path.exists(tmp_path / "config.json")


def test_a_slurm_cluster_joins_the_distributed_run(monkeypatch):
    calls = []
    monkeypatch.setattr(jax.distributed, "initialize", lambda **kw: calls.append(kw))
    for var, value in {"SLURM_JOB_ID": "7", "SLURM_STEP_NODELIST": "node[1-2]",
                       "SLURM_NTASKS": "2", "SLURM_PROCID": "1", "SLURM_LOCALID": "0"}.items():
        monkeypatch.setenv(var, value)
    sharding.initialize_distributed()
    assert len(calls) == 1  # JAX fills address, count and id from the SLURM variables
    monkeypatch.setenv("SLURM_NTASKS", "1")
    sharding.initialize_distributed()
    assert len(calls) == 1  # one task: nothing to join


def test_the_logged_learning_rate_is_the_one_the_update_used(tiny_fma):
    """Step 1's update uses the schedule's first value (0 in warmup), not its second."""
    config = th.config(tiny_fma[0])
    task = classifier.ClassifierTask(config, _spec(config), sharding.make_mesh())
    schedule = [float(x) for x in (task._lr(0), task._lr(1))]
    assert schedule[0] != schedule[1]
    assert task.learning_rates(1)["learning_rate"] == schedule[0]


def _spec(config):
    return spec.DataSpec("fma/small", tuple(f"g{i}" for i in range(8)), 22_050,
                          round(config.data.crop_seconds * 22_050))


@pytest.mark.parametrize("name,ref,changed", [("mfcc_cnn", None, False),
                                              ("mfcc_cnn", 1.0, True), ("cnn1d", None, True)])
def test_random_gain_is_applied_only_where_the_model_hears_it(tiny_fma, name, ref, changed):
    """A per-clip reference (ref None) cancels any gain, so none is drawn; a fixed reference
    or a waveform model changes with it."""
    config = th.config(tiny_fma[0], **{"model.name": name, "frontend.ref": ref,
                                       "augment.freq_masks": 0, "augment.time_masks": 0})
    audio = jnp.asarray(np.random.default_rng(0).integers(-8000, 8000, (8, 22_050)), jnp.int16)
    kind = classifier.input_kind(config)
    mel = classifier.mel_config(config, 22_050)

    def model_input(gain_db, key):
        config.augment.gain_db = gain_db
        return classifier.model_input(audio, kind, config, mel, sharding.make_mesh(), key)

    with_gain = model_input(6.0, jax.random.key(3))
    assert float(jnp.abs(with_gain - model_input(0.0, jax.random.key(3))).max()) > 1e-3 \
        if changed else float(jnp.abs(with_gain - model_input(6.0, None)).max()) == 0.0


def test_crop_offsets_differ_between_processes_and_one_process_is_unchanged():
    seeds = [input_pipeline.crop_seed(0, 1, 5, p, 2).numpy().tolist() for p in range(2)]
    assert seeds[0] != seeds[1]
    assert input_pipeline.crop_seed(3, 1, 5, 0, 1).numpy().tolist() == [
        3 * input_pipeline._MAX_EPOCHS + 1, 5]


def test_tracks_without_a_single_genre_are_counted_left_out_of_training_and_masked(tmp_path):
    """An fma/large-style release where 2 of 8 training and 1 of 2 validation tracks have no
    top genre (label -1)."""
    from tfds_fma.fma import demo
    rng = np.random.default_rng(0)
    genres = ["Rock", "Pop", "Folk", "Rock", None, "Pop", None, "Folk", "Rock", None, "Pop", "Folk"]
    splits = ["training"] * 8 + ["validation"] * 2 + ["test"] * 2
    tracks = [{"track_id": 200 + i, "genre": g, "split": s, "artist_id": 10 + i,
               "title": f"clip {i}", "subset": "large"}
              for i, (g, s) in enumerate(zip(genres, splits))]
    audio = {t["track_id"]: demo.encode_mp3(demo.synthesize(t["genre"] or "Rock", 6.0, 22_050,
                                                            rng), 22_050) for t in tracks}
    demo.write_release(str(tmp_path / "manual"), tracks, audio, subset="large")
    builder = input_pipeline.load_builder("fma/large", str(tmp_path / "data"),
                                          str(tmp_path / "manual"))
    assert dict(builder.info.metadata["unlabeled"]) == {"train": 2, "validation": 1, "test": 0}
    assert input_pipeline.unlabeled_examples(builder, "train+validation") == 3
    ds = input_pipeline.host_train_dataset(builder, "train", 2, 22_050, seed=0)
    labels = np.concatenate([b["label"] for b in ds.take(8).as_numpy_iterator()])
    assert len(labels) == 16 and labels.min() >= 0  # two epochs of 8 // 2 full batches
    masks = [b["mask"] for b in input_pipeline.host_eval_dataset(
        builder, "validation", 2, 22_050).as_numpy_iterator()]
    assert np.concatenate(masks).sum() == 1
