"""Multi-label genres (data.label='genres'): targets from FMA's genre hierarchy, a short training
run scored by mAP and ROC-AUC, the metrics against sklearn, and refused configs."""
import os

import numpy as np
import optax
import pytest
import tensorflow as tf
from jaxgenre.configs import common, mobilenet
from sklearn import exceptions as skx
from sklearn import metrics as skm

from jaxgenre import train
from jaxgenre.data import input_pipeline
from jaxgenre.evaluators import checkpoints, classification
from jaxgenre.run import checkpointing, rundir
from jaxgenre.tasks import classifier
from jaxgenre.tools import export
from tests import train_helpers as th


def test_the_multilabel_argument_sets_the_label_and_the_best_metric():
    c = mobilenet.get_config("demo,multilabel")
    assert (c.data.label, c.best_metric, c.best_mode) == ("genres", "val_map", "max")
    assert mobilenet.get_config("demo").data.label == "genre_top"  # today's default
    with pytest.raises(ValueError, match="valid: demo, multilabel"):
        common.parse_args("multi")


def test_targets_come_from_the_top_level_genres_and_tracks_without_one_have_none(tiny_fma):
    builder = input_pipeline.load_builder("fma/small", tiny_fma[0])
    names = builder.info.features["label"].names
    classes = input_pipeline.top_level_classes(builder)
    assert classes[1] == names.index("Experimental")  # Avant-Garde, a sub-genre of it
    target, shape = input_pipeline._labeler(builder, "genres")
    assert shape == [len(names)]

    def multi_hot(genre_ids):
        y, labelled = target({"genres": tf.constant(genre_ids, tf.int32)})
        return [names[i] for i in np.flatnonzero(y.numpy())], bool(labelled)

    assert multi_hot([12, 1]) == (["Experimental", "Rock"], True)
    assert multi_hot([38, 1]) == (["Experimental"], True)  # a genre and its sub-genre: once
    assert multi_hot([]) == ([], False)  # no genre: left out of training, masked in evaluation
    assert multi_hot([999_999]) == ([], False)  # outside the hierarchy
    batch = next(input_pipeline.host_eval_dataset(builder, "test", 16, 22_050,
                                                  label="genres").as_numpy_iterator())
    single = next(input_pipeline.host_eval_dataset(builder, "test", 16, 22_050
                                                   ).as_numpy_iterator())
    # the tiny release gives each track one genre: the multi-hot is the top genre's one-hot
    np.testing.assert_array_equal(batch["label"], np.eye(len(names))[single["label"]])
    assert batch["label"].dtype == np.int32 and batch["mask"].all()


def test_binary_label_smoothing_moves_each_genre_toward_one_half():
    y = np.array([[1, 0, 1]], np.int32)
    np.testing.assert_allclose(classifier.targets(y, 3, 0.1, multi=True), [[0.95, 0.05, 0.95]])
    np.testing.assert_allclose(classifier.targets(np.array([2]), 3, 0.0, multi=False),
                               [[0.0, 0.0, 1.0]])


def test_metrics_match_sklearn_and_leave_out_genres_without_positives_or_negatives():
    rng = np.random.default_rng(0)
    names = ["a", "b", "c", "none", "all"]
    labels = np.array([[1, 0, 1, 0, 1], [0, 1, 0, 0, 1], [1, 1, 0, 0, 1], [0, 0, 1, 0, 1],
                       [1, 0, 0, 0, 1], [0, 1, 1, 0, 1]], np.int32)
    logits = (rng.normal(size=labels.shape) + 1.5 * labels).astype(np.float32)
    result = classification.multilabel_metrics(logits, labels, names)
    probs = 1.0 / (1.0 + np.exp(-logits.astype(np.float64)))
    defined = labels[:, :3], probs[:, :3]
    assert result["undefined_genres"] == ["none", "all"]
    assert result["per_genre"]["none"] == {"ap": None, "roc_auc": None, "support": 0}
    assert result["per_genre"]["all"]["support"] == 6
    for i, name in enumerate(names[:3]):
        assert result["per_genre"][name]["ap"] == pytest.approx(
            skm.average_precision_score(labels[:, i], probs[:, i]))
    assert result["map"] == pytest.approx(skm.average_precision_score(*defined, average="macro"))
    assert result["roc_auc_macro"] == pytest.approx(skm.roc_auc_score(*defined, average="macro"))
    assert result["roc_auc_micro"] == pytest.approx(skm.roc_auc_score(labels, probs,
                                                                      average="micro"))
    top = logits.argmax(-1)
    assert result["precision_at_1"] == pytest.approx(np.mean(labels[np.arange(6), top]))
    assert result["loss"] == pytest.approx(
        float(optax.sigmoid_binary_cross_entropy(logits, labels.astype(np.float32)).mean()),
        rel=1e-5)
    # What sklearn makes of them: a warning and AP 0 (pulling mAP down for a genre merely
    # absent from a split), or a warning and ROC-AUC NaN (making the macro average NaN).
    with pytest.warns(UserWarning, match="No positive class"):
        assert skm.average_precision_score(labels[:, 3], probs[:, 3]) == 0.0
    with pytest.warns(skx.UndefinedMetricWarning, match="Only one class"):
        assert np.isnan(skm.roc_auc_score(labels[:, 4], probs[:, 4]))
    table = classification.format_multilabel_table(result).splitlines()
    assert table[-1].startswith("mAP:")
    assert any(r.startswith("left out of the macro averages") and r.endswith(": none, all")
               for r in table)
    assert [r.split()[1:3] for r in table if r.startswith("none")] == [["-", "-"]]


def test_bad_label_and_a_best_metric_it_does_not_report_are_refused():
    with pytest.raises(ValueError, match="Unknown data.label 'genre'; valid: genre_top, genres."):
        train.check_config(th.config("unused", **{"data.label": "genre"}))
    with pytest.raises(ValueError, match="best_metric 'val_accuracy' is not reported with "
                                         "data.label='genres'; valid: val_map, "):
        train.check_config(th.config("unused", **{"data.label": "genres"}))
    with pytest.raises(ValueError, match="for the classifier task; the stargan task"):
        train.check_config(th.gan_config("unused", **{"data.label": "genres"}))
    train.check_config(th.config("unused", **{"data.label": "genres",
                                                  "best_metric": "val_map"}))


def test_a_multilabel_run_trains_and_evaluate_reports_map_and_roc_auc(tiny_fma, tmp_path,
                                                                      capsys):
    workdir = str(tmp_path)
    config = th.config(tiny_fma[0], total_steps=4, checkpoint_every_steps=4, eval_every_steps=4,
                       **{"data.label": "genres", "best_metric": "val_map"})
    val = train.train_and_evaluate(config, workdir)
    assert set(val) == {f"val_{k}" for k in classification.SCALARS["genres"]}
    assert all(0.0 <= val[f"val_{k}"] <= 1.0 for k in ("map", "roc_auc_macro", "roc_auc_micro",
                                                        "precision_at_1"))
    best = checkpointing.manager(workdir, read_only=True, **rundir.best_options(config))
    assert best.best_step() == 4  # kept by val_map

    result = checkpoints.CheckpointEvaluator(workdir, "test").evaluate("best")
    assert result["step"] == 4 and result["num_examples"] == 16
    assert sum(m["support"] for m in result["per_genre"].values()) == 16  # one genre per track
    for key in ("map", "roc_auc_macro", "roc_auc_micro"):
        assert 0.0 <= result[key] <= 1.0, key
    assert all(0.0 <= m["ap"] <= 1.0 for m in result["per_genre"].values())
    saved = th.read_json(os.path.join(workdir, "eval", "test_4.json"))
    assert saved["map"] == result["map"] and saved["per_genre"] == result["per_genre"]
    assert not os.path.exists(os.path.join(workdir, "eval", "test_4.png"))  # no confusion matrix
    assert capsys.readouterr().out.strip().splitlines()[-1].startswith("mAP:")

    # Exported, it names every genre at or above one half (not one argmax genre).
    out = str(tmp_path / "export")
    export.export(workdir, out, platforms=("cpu",))
    serve = tf.saved_model.load(out).signatures["serving_default"]
    result = serve(waveform=tf.constant(np.random.default_rng(0).normal(
        scale=0.1, size=(3, 22_050)).astype(np.float32)))
    assert set(result) == {"probabilities", "genres", "genre_names"}
    probabilities, genres = result["probabilities"].numpy(), result["genres"].numpy()
    np.testing.assert_array_equal(genres, probabilities >= 0.5)
    names = input_pipeline.load_builder("fma/small", tiny_fma[0]).info.features["label"].names
    assert [s.decode() for s in result["genre_names"].numpy()] == [
        ",".join(n for n, g in zip(names, row, strict=True) if g) for row in genres]


def test_metrics_of_a_one_clip_split_are_nan_where_undefined_not_an_error():
    """One clip: every genre is all-positive or all-negative; the pooled pairs still mix
    (micro ROC-AUC defined), while a clip without any genre leaves nothing defined."""
    names = ["a", "b", "c"]
    one = classification.multilabel_metrics(np.array([[2.0, -1.0, 0.5]]), np.array([[1, 0, 0]]), names)
    assert one["undefined_genres"] == names and np.isnan(one["map"])
    assert one["roc_auc_micro"] == 1.0 and one["precision_at_1"] == 1.0
    none = classification.multilabel_metrics(np.array([[2.0, -1.0, 0.5]]), np.array([[0, 0, 0]]),
                                         names)
    assert np.isnan(none["roc_auc_micro"]) and none["num_examples"] == 1
