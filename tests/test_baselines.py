"""The classical baselines: one table of every model from the command line, as markdown and
JSON, better than chance on the synthetic genres; FMA's feature layout; bad input refused with
the fix named."""
import json
import os
import subprocess
import sys

import numpy as np
import pytest

from jaxgenre.data import input_pipeline
from jaxgenre.tools import baselines

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _cli(*args):
    proc = subprocess.run([sys.executable, "-m", "jaxgenre.baselines", *args], cwd=ROOT,
                          capture_output=True, text=True, timeout=600, check=False)
    return proc.returncode, proc.stdout, proc.stderr


def test_command_line_writes_every_model_and_hears_the_genres(tiny_fma, tmp_path):
    out = tmp_path / "out"
    rc, stdout, stderr = _cli("--data_dir", tiny_fma[0], "--output_dir", str(out))
    assert rc == 0, stderr
    report = json.loads((out / "baselines.json").read_text())
    assert [m["name"] for m in report["models"]] == list(baselines.MODELS)
    assert report["clips"] == {"train": 32, "validation": 16, "test": 16}
    assert report["features"] == "mfcc" and report["num_features"] == 140
    assert report["num_classes"] == 8 and report["feature_seconds"] > 0
    for m in report["models"]:
        assert 0 <= m["validation_accuracy"] <= 1 and 0 <= m["test_accuracy"] <= 1
        assert m["test_clips"] == m["test_tracks"] == 16
        assert m["fit_seconds"] >= 0 and m["predict_seconds"] >= 0
        assert (m["value"] is None) == (m["hyperparameter"] is None)
    table = (out / "baselines.md").read_text()
    assert stdout == table
    assert all(f"| {m['model']} |" in table for m in report["models"])
    # The styles differ in timbre, which MFCCs capture. 8 genres x 2 test clips: 6 or more
    # right out of 16 happens by chance with p < 0.01.
    svm = next(m for m in report["models"] if m["name"] == "svm_rbf")
    assert svm["test_accuracy"] >= 6 / 16


def test_librosa_set_is_fma_features_csv_with_the_mfcc_set_inside():
    from tfds_fma.fma import demo
    clip = demo.synthesize("Rock", 6.0, 22050, np.random.default_rng(0))
    full, mfcc = baselines.librosa_features(clip, 22050), baselines.mfcc_features(clip, 22050)
    assert full.shape == (74 * 7,) and mfcc.shape == (20 * 7,)  # features.csv's 518 columns
    assert np.isfinite(full).all()
    # After chroma_stft, chroma_cqt, chroma_cens (12 rows each) and tonnetz (6): the MFCCs.
    np.testing.assert_allclose(full[42 * 7:62 * 7], mfcc, rtol=1e-4, atol=1e-3)
    np.testing.assert_allclose(baselines.statistics(np.array([[1.0, 2, 3, 4, 10]])),
                               [4, np.sqrt(10), 3.6 / np.sqrt(10), -0.212, 3, 1, 10], rtol=1e-6)


def test_bad_input_is_refused_naming_the_fix(tmp_path):
    valid = "logistic_regression, knn, naive_bayes, svm_rbf, gradient_boosting"
    with pytest.raises(ValueError, match=f"forest; valid: {valid}"):
        baselines.parse_models(["svm_rbf", "forest"])
    with pytest.raises(input_pipeline.DatasetUnavailableError,
                       match=r"Unknown dataset 'fma/tiny' \(--dataset\)"):
        input_pipeline.load_builder("fma/tiny", str(tmp_path), build=False, flag="--dataset")
    with pytest.raises(input_pipeline.DatasetUnavailableError,
                       match="python -m tfds_fma.build --config small_16k --manual_dir FMA_DIR "
                             "--data_dir"):
        input_pipeline.load_builder("fma/small_16k", str(tmp_path), build=False)
    assert not (tmp_path / "fma").exists()  # nothing was built
    # The command line refuses a model before it looks for the (here missing) dataset.
    rc, _, stderr = _cli("--data_dir", str(tmp_path), "--models", "svm_rbf,forest")
    assert rc == 1 and f"error: Unknown model(s) forest; valid: {valid}." in stderr
