"""musicnn with its published weights: our port's tag probabilities, logits and penultimate
features equal the original TensorFlow graph's (run from the wheel's .meta) for both variants
and any patch length; the importer's CLI writes a checkpoint `load` restores, and bad input is
refused naming the fix.

The wheel: $JAXGENRE_MUSICNN_WHEEL, else ~/.cache/jaxgenre/musicnn/, else `pip download` into
it; the tests skip, saying so, only when that fails.
"""
import glob
import os
import pathlib
import subprocess
import sys
import zipfile

import jax
import librosa
import numpy as np
import pytest
from flax import nnx

from jaxgenre import models
from jaxgenre.pretrained import import_dir, musicnn_original, musicnn_wheel
from jaxgenre.tools import baselines
from tests import train_helpers as th

CACHE = pathlib.Path.home() / ".cache" / "jaxgenre" / "musicnn"
VARIANTS = ("MSD_musicnn", "MTT_musicnn")
TOLERANCE = 1e-4


@pytest.fixture(scope="module")
def wheel():
    if os.environ.get("JAXGENRE_MUSICNN_WHEEL"):
        return os.environ["JAXGENRE_MUSICNN_WHEEL"]
    pattern = str(CACHE / "musicnn-0.1.0-*.whl")
    if not glob.glob(pattern):
        proc = subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps",
                               "musicnn==0.1.0", "-d", str(CACHE)],
                              capture_output=True, text=True, timeout=300, check=False)
        if not glob.glob(pattern):
            pytest.skip(f"No musicnn wheel: set JAXGENRE_MUSICNN_WHEEL or put it in {CACHE}; "
                        f"`pip download` failed: {proc.stderr.strip()[-300:]}")
    return glob.glob(pattern)[0]


@pytest.fixture(scope="module")
def imported(wheel, tmp_path_factory):
    """{variant: import directory}, written through the command line."""
    out = tmp_path_factory.mktemp("musicnn")
    argvs = [["musicnn", f"--wheel={wheel}", f"--variant={v}", f"--out={out / v}"]
             for v in VARIANTS]
    for code, log in th.cli_exits("jaxgenre.tools.import_weights", argvs):
        assert code == 0, log[-2000:]
    return {v: str(out / v) for v in VARIANTS}


def _patches(frames: int) -> np.ndarray:
    """[4, frames, 96] musicnn inputs: three random spectra, louder at low frequencies, and a
    harmonic tone through musicnn's own frontend (librosa, log10(10000 x + 1))."""
    rng = np.random.default_rng(0)
    power = np.exp(rng.normal(-2.0 - 0.08 * np.arange(96), 2.5, (3, frames, 96)))
    t = np.arange(frames * 256) / 16000
    tone = sum(np.sin(2 * np.pi * 220 * h * t) / h for h in range(1, 6)) * (1 + np.sin(3 * t)) / 4
    mel = librosa.feature.melspectrogram(y=tone.astype(np.float32), sr=16000, n_fft=512,
                                         hop_length=256, n_mels=96).T[:frames]
    return np.log10(10000 * np.concatenate([power, mel[None]]) + 1).astype(np.float32)


@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("frames", [187, 100])
def test_port_equals_the_original_graph(wheel, imported, variant, frames):
    x = _patches(frames)
    model, info = import_dir.load_model(imported[variant])
    # One compilation: op by op, the first call takes seconds longer on CPU.
    logits, features = nnx.jit(models.logits_and_features)(model, x[..., None])
    probs = jax.nn.sigmoid(logits)
    original = musicnn_original.OriginalMusicnn(wheel, variant)
    want = [original(x)[k] for k in ("probabilities", "logits", "penultimate")]
    original.close()
    assert len(info["tags"]) == 50 and logits.shape == (4, 50) and features.shape == (4, 200)
    gaps = [float(np.abs(np.asarray(a) - b).max()) for a, b in zip((probs, logits, features), want)]
    print(f"{variant} T={frames}: max |diff| probs {gaps[0]:.2e} logits {gaps[1]:.2e} "
          f"penultimate {gaps[2]:.2e}")
    assert max(gaps) <= TOLERANCE, gaps
    assert float(np.ptp(want[0])) > 0.1  # the tags differ between patches: a real comparison


def test_import_json_describes_the_model_and_its_frontend(imported):
    _, info = import_dir.load_model(imported["MTT_musicnn"])
    assert info["tags"][:3] == ["guitar", "classical", "slow"]
    assert info["frontend"] == {"sample_rate": 16000, "n_fft": 512, "hop_length": 256,
                                "n_mels": 96, "compress": "log10_1p", "log_gain": 10000.0}
    assert info["model"] == "musicnn" and info["model_kwargs"]["num_units_backend"] == 200


def test_bad_input_is_refused_naming_the_fix(wheel, tmp_path):
    not_musicnn = tmp_path / "other-1.0-py3-none-any.whl"
    with zipfile.ZipFile(not_musicnn, "w") as z:
        z.writestr("other/__init__.py", "")
    cases = [
        (str(tmp_path / "missing.whl"), "MSD_musicnn", "no such file or directory.*pip download"),
        (str(not_musicnn), "MSD_musicnn", "not the musicnn wheel.*pip download"),
        (__file__, "MSD_musicnn", "not a wheel"),
        (wheel, "MSD_vgg", "Unknown variant 'MSD_vgg'; valid: MSD_musicnn, MTT_musicnn"),
    ]
    for path, variant, message in cases:
        with pytest.raises(import_dir.ImportWeightsError, match=message):
            musicnn_wheel.import_musicnn(path, variant, str(tmp_path / "out"))
    with pytest.raises(import_dir.ImportWeightsError, match="has no import.json"):
        import_dir.load_model(str(tmp_path))


def test_checkpoints_that_do_not_fit_are_refused_naming_each_variable(wheel):
    _, variables = musicnn_wheel.read_wheel(wheel, "MTT_musicnn")
    build = lambda **kwargs: nnx.eval_shape(lambda: models.get("musicnn")(50, **kwargs,
                                                                          rngs=nnx.Rngs(0)))
    narrow = build(num_filt_midend=32)
    with pytest.raises(import_dir.ImportWeightsError,
                       match=r"conv2d_5/kernel \[7, 561, 1, 64\] does not fit our "
                             r"midend/0/conv/kernel \[7, 561, 32\]"):
        musicnn_wheel.convert(variables, narrow)
    model = build()
    musicnn_wheel.convert(variables, model)  # as published, Adam's slots left out: it fits
    variables = {**variables, "extra/kernel": np.zeros(3, np.float32)}
    del variables["dense_1/bias"]
    with pytest.raises(import_dir.ImportWeightsError,
                       match=r"no dense_1/bias \(for our dense/bias\).*extra/kernel \[3\] has no "
                             "place"):
        musicnn_wheel.convert(variables, model)


def test_cli_refuses_an_unknown_model_and_an_existing_output(wheel, imported):
    argvs = [["vgg", f"--wheel={wheel}", f"--out={imported['MSD_musicnn']}x"],
             ["musicnn", f"--wheel={wheel}", f"--out={imported['MSD_musicnn']}"],
             ["musicnn", f"--out={imported['MSD_musicnn']}y"]]
    (code_model, log_model), (code_out, log_out), (code_flag, log_flag) = th.cli_exits(
        "jaxgenre.tools.import_weights", argvs)
    assert code_model != 0 and ("Pass the model to import: one of musicnn, mobilenet_v2, "
                                "resnet50 (got ['vgg'])") in log_model, log_model
    assert code_flag != 0 and "musicnn needs --wheel" in log_flag, log_flag
    assert code_out != 0 and "already holds an import" in log_out, log_out
    assert "Traceback" not in log_out


def test_the_frozen_features_reference_pools_the_original_graph_over_3s_patches(wheel):
    t = np.arange(7 * 16000) / 16000  # 7 s: two whole 187-frame patches, the rest dropped
    y = (0.3 * np.sin(2 * np.pi * 440 * t) * (1 + np.sin(2 * t))).astype(np.float32)
    patches = musicnn_original.patches(y)
    mel = librosa.feature.melspectrogram(y=y, sr=16000, n_fft=512, hop_length=256, n_mels=96).T
    assert patches.shape == (2, 187, 96)
    np.testing.assert_allclose(patches[1], np.log10(10000 * mel[187:374] + 1), atol=2e-3)
    features = baselines.musicnn_features(wheel)
    original = musicnn_original.OriginalMusicnn(wheel)
    np.testing.assert_allclose(features(y, 16000), original(patches)["penultimate"].mean(0),
                               rtol=1e-6)
    assert musicnn_original.patches(y[:16000]).shape == (1, 187, 96)  # 1 s: padded to 3 s
    with pytest.raises(ValueError, match="need 16 kHz audio.*fma/small_16k"):
        features(y, 22050)
    with pytest.raises(ValueError, match="needs --musicnn_wheel"):
        baselines.musicnn_features(None)
