"""LiteRT export (`jaxgenre.export --format tflite`, `--quantize int8`): the float models judge
the tiny set's clips as `Judge` does, the int8 ones name the same top genre on >= 95 % of
them, `api.Classifier` serves the export, and runs that cannot be quantized are refused."""
import json
import os
import subprocess
import sys

import jax
import numpy as np
import pytest
import soundfile

from jaxgenre import api
from jaxgenre.core import sharding
from jaxgenre.data import input_pipeline
from jaxgenre.inference import judge, litert
from jaxgenre.tools import export
from tests import train_helpers as th

SPLITS = ("train", "validation", "test")


@pytest.fixture(scope="module")
def lite_exports(tiny_classifier, tmp_path_factory):
    """{'none': float export dir, 'int8': int8 export dir} of the tiny classifier run."""
    root = tmp_path_factory.mktemp("litert")
    return {q: export.export_lite(tiny_classifier, str(root / q), quantize=q,
                                  calibration_clips=32) and str(root / q)
            for q in litert.QUANTIZE}


def _judged(tiny_classifier, tiny_fma, judges: dict) -> dict:
    """{name: probabilities [64, C]} of every clip of the tiny set (all splits), as stored:
    zero-padded to 30 s with their real lengths, the layout evaluation feeds the judge."""
    mesh = sharding.make_mesh()
    reference = judge.Judge(tiny_classifier, mesh)
    builder = input_pipeline.load_builder("fma/small", tiny_fma[0])
    out = {name: [] for name in ("jax", *judges)}
    for split in SPLITS:
        for batch in input_pipeline.clip_batches(builder, split, 8, mesh):
            keep = np.asarray(batch["mask"])
            audio = np.asarray(batch["audio"]).astype(np.float32)[keep] / 32768.0
            lengths = np.asarray(batch["num_samples"])[keep]
            full = np.asarray(reference(batch["audio"].astype(jax.numpy.float32) / 32768.0,
                                        batch["num_samples"])[0])
            out["jax"].append(full[keep])
            for name, lite in judges.items():
                out[name].append(lite(audio, lengths)[0])
    return {name: np.concatenate(p) for name, p in out.items()}


def test_float_matches_the_judge_and_int8_keeps_the_top_genre(lite_exports, tiny_classifier,
                                                               tiny_fma):
    judges = {q: litert.LiteJudge(d) for q, d in lite_exports.items()}
    probabilities = _judged(tiny_classifier, tiny_fma, judges)
    reference = probabilities["jax"]
    assert reference.shape == (64, 8)
    float_diff = np.abs(probabilities["none"] - reference).max()
    int8_diff = np.abs(probabilities["int8"] - reference).max()
    agree = (probabilities["int8"].argmax(1) == reference.argmax(1)).mean()
    sizes = {q: json.load(open(os.path.join(d, litert.INFO_FILE)))["bytes"][litert.NETWORK_FILE]
             for q, d in lite_exports.items()}
    print(f"float max |p - p_jax| {float_diff:.1e}; int8 {int8_diff:.3f}, top genre agrees on "
          f"{agree:.1%} of 64 clips; network {sizes['none']} -> {sizes['int8']} bytes")
    assert float_diff <= 1e-4
    assert agree >= 0.95
    assert sizes["int8"] * 2.5 <= sizes["none"]  # int8 weights; the tiny model's graph is a
    # larger share of its file than a real network's (3.3x smaller for MobileNetV2)


def test_the_api_and_its_cli_serve_a_litert_export(lite_exports, tmp_path):
    int8 = lite_exports["int8"]
    classifier = api.Classifier.from_run(int8, batch_sizes=(4,))
    assert classifier.mesh is None and classifier.info["runtime"] == "litert-int8"
    assert classifier.info["step"] == 4 and classifier.info["model"] == "mfcc_cnn"
    rate = classifier.sample_rate
    t = np.arange(3 * rate) / rate
    audio = (0.3 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)
    prediction = classifier.predict(audio, rate)
    window = np.zeros((1, classifier.window), np.float32)  # the file is one window, padded
    window[0, :len(audio)] = audio
    direct = classifier.judge(window, np.array([len(audio)]))[0][0]
    np.testing.assert_allclose(prediction.probabilities, direct, atol=1e-6)

    wav = tmp_path / "tone.wav"
    soundfile.write(wav, audio, rate)
    proc = subprocess.run([sys.executable, "-m", "jaxgenre.predict", "--workdir", int8,
                           "--output", str(tmp_path / "p.csv"), str(wav)], cwd=th.ROOT,
                          capture_output=True, text=True, timeout=300, check=False)
    assert proc.returncode == 0, proc.stderr[-3000:]
    genre = classifier.class_names[int(direct.argmax())]
    assert genre in (tmp_path / "p.csv").read_text().splitlines()[1]


def test_runs_that_cannot_be_quantized_are_refused(tmp_path):
    stargan = tmp_path / "stargan"
    stargan.mkdir()
    (stargan / "config.json").write_text(json.dumps(th.gan_config("/nowhere").to_dict()))
    with pytest.raises(export.ExportError, match="is a 'stargan' run"):
        export.export_lite(str(stargan), str(tmp_path / "a"), quantize="int8")
    assert not (tmp_path / "a").exists()
    with pytest.raises(litert.LiteError, match="holds no frontend.tflite"):
        litert.LiteJudge(str(stargan))
    proc = subprocess.run([sys.executable, "-m", "jaxgenre.export", "--workdir", str(stargan),
                           "--out", str(tmp_path / "b"), "--format", "saved_model",
                           "--quantize", "int8"], cwd=th.ROOT, capture_output=True, text=True,
                          timeout=300, check=False)
    assert proc.returncode == 1 and "--quantize int8 makes LiteRT models" in proc.stderr, \
        proc.stderr[-3000:]
