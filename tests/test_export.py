"""`jaxgenre.export`: the SavedModel classifies real clips as `Judge` does, for any batch and
length, keeps its labels, and runs that cannot be exported get errors without a traceback."""
import json
import os
import shutil
import subprocess
import sys

import jax
import numpy as np
import pytest
import tensorflow as tf
from scipy import special

from jaxgenre.core import sharding
from jaxgenre.data import input_pipeline
from jaxgenre.evaluators import classification
from jaxgenre.inference import judge
from jaxgenre.tools import export
from tests import train_helpers as th

TOLERANCE = 1e-4  # TensorFlow's XLA and JAX's compile the same StableHLO separately


@pytest.fixture(scope="module")
def exported(tiny_classifier, tmp_path_factory):
    """The tiny classifier run and its SavedModel, exported by the CLI with its defaults:
    (workdir, saved model dir, info, the CLI's console lines)."""
    workdir = tiny_classifier
    out = str(tmp_path_factory.mktemp("export") / "saved_model" / "1")
    proc = subprocess.run([sys.executable, "-m", "jaxgenre.export", "--workdir", workdir,
                           "--out", out], cwd=th.ROOT, capture_output=True, text=True,
                          timeout=300, check=False, env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2"))
    assert proc.returncode == 0, proc.stderr[-3000:]
    lines = (proc.stdout + proc.stderr).strip().splitlines()
    return workdir, out, th.read_json(os.path.join(out, "export_info.json")), lines


def test_the_saved_model_classifies_real_clips_as_the_judge(exported, tiny_fma):
    workdir, out, info, _ = exported
    builder = input_pipeline.load_builder("fma/small", tiny_fma[0])
    clips = input_pipeline.clips_by_label(builder, "test", 1).values()
    audio = np.concatenate([c["audio"] for c in clips]).astype(np.float32) / 32768.0
    num_samples = np.concatenate([c["num_samples"] for c in clips]).astype(np.int32)
    clip_samples = audio.shape[1]
    assert audio.shape[0] == 8 and info["clip_samples"] == clip_samples
    assert (num_samples < clip_samples).all()  # 6 s of audio stored zero-padded to 30 s

    mesh = sharding.make_mesh()  # the tests' 8 CPU devices: a batch of 8 clips
    reference = judge.Judge(workdir, mesh)
    assert reference.step == info["step"] == 4

    def judged(x, n):
        data = sharding.batch_sharding(mesh)
        return np.asarray(reference(jax.device_put(x, data), jax.device_put(n, data))[0])

    model = tf.saved_model.load(out)
    serve, padded = model.signatures["serving_default"], model.signatures["classify_padded"]

    # The dataset's layout: stored clips and their real lengths, as evaluation feeds the judge.
    expected = judged(audio, num_samples)
    got = padded(waveform=tf.constant(audio), num_samples=tf.constant(num_samples))
    diffs = [np.abs(got["probabilities"].numpy() - expected).max()]
    assert got["probabilities"].shape == (8, len(info["genres"]))
    assert got["probabilities"].dtype == tf.float32
    np.testing.assert_array_equal(got["genre"].numpy(), expected.argmax(-1))

    # Only the real audio, of other lengths and batch sizes: the model pads it as stored.
    for batch, length in ((8, int(num_samples.min())), (3, 2 * 22050 + 123)):
        short = audio[:batch, :length]
        stored = np.zeros((8, clip_samples), np.float32)
        stored[:batch, :length] = short
        expected = judged(stored, np.full(8, length, np.int32))[:batch]
        got = serve(waveform=tf.constant(short))["probabilities"].numpy()
        assert got.shape == (batch, 8)
        diffs.append(np.abs(got - expected).max())

    # Longer than a stored clip: its first clip_samples samples, as the dataset stores it.
    longer = np.concatenate([audio[:1], np.full((1, 999), 0.5, np.float32)], axis=1)
    expected = judged(np.repeat(audio[:1], 8, axis=0), np.full(8, clip_samples, np.int32))[:1]
    diffs.append(np.abs(serve(waveform=tf.constant(longer))["probabilities"].numpy()
                        - expected).max())
    print(f"max abs difference to Judge: {max(diffs):.2e}")
    assert max(diffs) <= TOLERANCE, diffs


def test_the_judge_places_crops_as_the_evaluation_does(tiny_classifier, tiny_fma):
    """The judge (and so predict and the export) hears each whole clip as evaluation does: its
    probabilities are the softmax of `ClassificationEvaluator`'s crop-averaged logits."""
    mesh = sharding.make_mesh()
    builder = input_pipeline.load_builder("fma/small", tiny_fma[0])
    run = judge.restore(tiny_classifier, mesh)
    evaluator = classification.ClassificationEvaluator(run.task, run.state_sharding, builder,
                                                       "test", 8, mesh)
    logits, labels = evaluator.predict(run.state)
    reference = judge.Judge(tiny_classifier, mesh)
    probabilities, judged_labels = [], []
    for batch in input_pipeline.clip_batches(builder, "test", 8, mesh):
        audio = batch["audio"].astype(jax.numpy.float32) / 32768.0
        out = np.asarray(reference(audio, batch["num_samples"])[0])
        keep = np.asarray(batch["mask"])
        probabilities.append(out[keep])
        judged_labels.append(np.asarray(batch["label"])[keep])
    np.testing.assert_array_equal(np.concatenate(judged_labels), labels)
    np.testing.assert_allclose(np.concatenate(probabilities), special.softmax(logits, axis=-1),
                               atol=1e-5)


def test_labels_and_rate_round_trip(exported, tiny_fma):
    workdir, out, info, _ = exported
    names = input_pipeline.load_builder("fma/small", tiny_fma[0]).info.features["label"].names
    model = tf.saved_model.load(out)
    assert [g.decode() for g in model.genres.numpy()] == names == info["genres"]
    assert int(model.sample_rate.numpy()) == 22050 == info["sample_rate"]
    with open(os.path.join(out, export.INFO_FILE)) as f:
        saved = json.load(f)
    assert saved["genres"] == names and saved["step"] == 4 and saved["model"] == "mfcc_cnn"
    assert saved["workdir"] == os.path.abspath(workdir)
    result = model.signatures["serving_default"](waveform=tf.zeros([2, 22050]))
    assert [names[i] for i in result["genre"].numpy()] == [
        n.decode() for n in result["genre_name"].numpy()]


def test_runs_that_cannot_be_exported_are_refused_cleanly(exported, tmp_path):
    workdir, out, _, _ = exported
    with pytest.raises(export.ExportError, match="not an empty directory"):
        export.export(workdir, out)
    no_checkpoints = tmp_path / "untrained"
    no_checkpoints.mkdir()
    for name in ("config.json", "dataset_info.json"):
        shutil.copy(os.path.join(workdir, name), no_checkpoints / name)
    with pytest.raises(export.ExportError, match="has no checkpoint.*train it first"):
        export.export(str(no_checkpoints), str(tmp_path / "a"))

    stargan = tmp_path / "stargan"
    stargan.mkdir()
    (stargan / "config.json").write_text(json.dumps(th.gan_config("/nowhere").to_dict()))
    proc = subprocess.run([sys.executable, "-m", "jaxgenre.export", "--workdir", str(stargan),
                           "--out", str(tmp_path / "b")], cwd=th.ROOT, capture_output=True,
                          text=True, timeout=300, check=False,
                          env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2"))
    assert proc.returncode == 1, proc.stderr[-3000:]
    assert "error: " in proc.stderr and "is a 'stargan' run" in proc.stderr
    assert "Traceback" not in proc.stderr and not (tmp_path / "b").exists()


def test_cli_lowers_for_cpu_and_cuda_here_and_prints_a_few_lines(exported):
    """The default --platforms cpu,cuda lowers on a host without a GPU (no GPU run is tested
    here), and the console shows our lines, not TensorFlow's SavedModel chatter."""
    _, _, info, lines = exported
    assert info["platforms"] == ["cpu", "cuda"]
    assert len(lines) <= 3, lines
