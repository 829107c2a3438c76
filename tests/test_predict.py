"""The predict CLI on real MP3s of any length: top-k lines, a CSV, plots, unreadable files skipped
and named; file probabilities are the mean of the judge's window probabilities; runs that cannot
predict are refused cleanly."""
import csv
import json
import os
import subprocess
import sys

import jax
import numpy as np
import pytest
import soundfile

from jaxgenre import api
from jaxgenre.audio import windows
from jaxgenre.core import sharding
from jaxgenre.data import audio_files
from jaxgenre.inference import judge as judge_lib
from tests import train_helpers as th

RATE = 22050


@pytest.fixture(scope="module")
def classifier_run(tiny_classifier):
    return tiny_classifier


@pytest.fixture(scope="module")
def music(tmp_path_factory):
    """music/long.mp3 (25 s: 4 windows of 10 s), music/sub/short.mp3 (3 s: 1 window),
    music/broken.mp3 (not audio), music/sub/empty.wav (no samples), music/notes.txt (ignored)."""
    from tfds_fma.fma import demo
    root = tmp_path_factory.mktemp("music")
    (root / "sub").mkdir()
    rng = np.random.default_rng(0)
    for name, seconds in (("long.mp3", 25.0), ("sub/short.mp3", 3.0)):
        (root / name).write_bytes(demo.encode_mp3(demo.synthesize("Rock", seconds, RATE, rng), RATE))
    (root / "broken.mp3").write_bytes(b"not audio")
    soundfile.write(str(root / "sub" / "empty.wav"), np.zeros(0), RATE)
    (root / "notes.txt").write_text("not an audio file name")
    return str(root)


def _cli(*args):
    env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=2",
               TF_CPP_MIN_LOG_LEVEL="2")
    proc = subprocess.run([sys.executable, "-m", "jaxgenre.predict", *args], cwd=th.ROOT, env=env,
                          capture_output=True, text=True, timeout=600, check=False)
    return proc.returncode, proc.stdout, proc.stderr


@pytest.mark.parametrize("length,window,hop", [(12_345, 1_024, 256), (12_345, 512, 256),
                                               (12_288, 512, 256), (100, 1_024, 256), (1, 2, 1)])
def test_windows_frames_join_back_onto_the_signals_frame_grid(length, window, hop):
    """Unchanged windows' frames (here each frame is the sample at its centre) cross-fade back
    into the whole signal's frames exactly: the sin^2 weights sum to one at every frame."""
    x = np.random.default_rng(0).normal(size=length).astype(np.float32)
    cut = windows.crossfade_cut(x, window)
    assert cut.shape[1] == window
    # centred frames every hop: 1 + window // hop per window, the last at the next one's start
    frames = np.concatenate([cut[:, ::hop], np.zeros((len(cut), 1), np.float32)], axis=1)
    expected = np.append(x, np.zeros(hop, np.float32))[:length // hop * hop + 1:hop]
    np.testing.assert_allclose(windows.crossfade_join_frames(frames, window, hop, length),
                               expected, atol=1e-6)
    changed = windows.crossfade_join_frames(frames[::-1], window, hop, length)
    assert len(cut) == 1 or np.abs(changed - expected).max() > 0.1  # a change is heard
    with pytest.raises(ValueError, match="not a multiple of 2 x hop"):
        windows.crossfade_join_frames(frames, window + 1, hop, length)


def test_windows_cover_every_sample_directories_are_searched_and_reading_names_errors(music):
    assert windows.covering_starts(25 * RATE, 10 * RATE).tolist() == [0, 5 * RATE, 10 * RATE,
                                                                    15 * RATE]
    assert windows.covering_starts(22 * RATE, 10 * RATE).tolist() == [0, 5 * RATE, 10 * RATE,
                                                                    12 * RATE]
    assert windows.covering_starts(3 * RATE, 10 * RATE).tolist() == [0]
    assert sharding.round_up(3, 2) == 4 and sharding.round_up(16, 8) == 16
    found = audio_files.find([music, "missing.mp3"])
    assert [os.path.relpath(p, music) for p in found[:-1]] == [
        "broken.mp3", "long.mp3", os.path.join("sub", "empty.wav"), os.path.join("sub", "short.mp3")]
    assert found[-1] == "missing.mp3"  # named on its own: kept, so that reading reports it
    with pytest.raises(FileNotFoundError, match="missing.mp3: no such file"):
        audio_files.read("missing.mp3", RATE)
    with pytest.raises(ValueError, match="Cannot read .*broken.mp3 as audio"):
        audio_files.read(found[0], RATE)
    with pytest.raises(ValueError, match="empty.wav holds no audio samples"):
        audio_files.read(found[2], RATE)
    short = audio_files.read(found[3], 16000)  # resampled, mono, float32
    assert short.dtype == np.float32 and short.ndim == 1 and abs(len(short) - 3 * 16000) < 2000


def test_cli_prints_top_k_writes_csv_and_plots_and_skips_unreadable_files(classifier_run, music,
                                                                          tmp_path):
    out = tmp_path / "out" / "preds.csv"
    code, stdout, stderr = _cli("--workdir", classifier_run, music, "--output", str(out), "--plot")
    assert code == 0, stderr[-3000:]
    lines = stdout.strip().splitlines()
    assert [line.split(": ")[0] for line in lines] == [os.path.join(music, "long.mp3"),
                                                       os.path.join(music, "sub", "short.mp3")]
    for line in lines:
        top = line.split(": ", 1)[1].split(", ")
        probabilities = [float(t.rsplit(" ", 1)[1]) for t in top]
        assert len(top) == 3 and probabilities == sorted(probabilities, reverse=True)
    assert "skipped: Cannot read " + os.path.join(music, "broken.mp3") in stderr
    assert "skipped: " + os.path.join(music, "sub", "empty.wav") + " holds no audio" in stderr
    assert "Traceback" not in stderr and "4 files (2 classified)" in stderr
    with open(out) as f:
        rows = list(csv.reader(f))
    names = th.read_json(os.path.join(classifier_run, "dataset_info.json"))["class_names"]
    assert rows[0] == ["path", "genre", *names] and len(rows) == 3
    for row, line in zip(rows[1:], lines, strict=True):
        probabilities = np.array(row[2:], float)
        assert abs(probabilities.sum() - 1.0) <= 1e-4
        assert row[1] == names[int(np.argmax(probabilities))] == line.split(": ")[1].split(" ")[0]
    assert sorted(os.listdir(tmp_path / "out")) == ["long_genres.png", "preds.csv",
                                                    "short_genres.png"]


def test_file_probabilities_are_the_mean_of_the_judges_window_probabilities(classifier_run, music):
    """In-process on this process's 8 devices: 4 s windows of the 25 s file (12 of them) in
    batches of 8, the last padded; against each window judged alone."""
    mesh = sharding.make_mesh()
    judge = judge_lib.Judge(classifier_run, mesh)
    paths = [os.path.join(music, name) for name in ("long.mp3", "broken.mp3", "sub/short.mp3")]
    classifier = api.Classifier(judge, mesh, window_seconds=4.0, batch_sizes=(2,))
    results = list(classifier.predict_files(paths))
    assert [type(r).__name__ for r in results] == ["Prediction", "Skipped", "Prediction"]
    long, short = results[0], results[2]
    window = 4 * RATE
    audio = audio_files.read(paths[0], RATE)
    starts = windows.covering_starts(len(audio), window)
    assert len(starts) == 12 and long.window_probabilities.shape == (12, len(judge.class_names))
    np.testing.assert_allclose(long.times, (starts + window / 2) / RATE, rtol=1e-6)
    alone = np.stack([_judge_alone(judge, mesh, audio[s:s + window]) for s in starts])
    np.testing.assert_allclose(long.window_probabilities, alone, atol=1e-5)
    np.testing.assert_allclose(long.probabilities, alone.mean(axis=0), atol=1e-5)
    assert short.window_probabilities.shape[0] == 1
    np.testing.assert_allclose(short.probabilities.sum(), 1.0, atol=1e-5)


def _judge_alone(judge, mesh, clip: np.ndarray) -> np.ndarray:
    """float32 [C]: the judge's probabilities for one clip, copied to every device."""
    n = jax.device_count()
    batch = np.repeat(clip[None], n, axis=0)
    data = sharding.batch_sharding(mesh)
    x = jax.make_array_from_callback(batch.shape, data, lambda i: batch[i])
    lengths = np.full(n, len(clip), np.int32)
    num = jax.make_array_from_callback((n,), data, lambda i: lengths[i])
    return np.asarray(judge(x, num)[0])[0]


def test_runs_that_cannot_predict_and_files_that_cannot_be_read_are_refused_cleanly(
        classifier_run, music, tmp_path):
    gan = tmp_path / "gan"
    gan.mkdir()
    (gan / "config.json").write_text(json.dumps(th.gan_config("/nowhere").to_dict()))
    untrained = tmp_path / "untrained"
    (untrained / "checkpoints").mkdir(parents=True)
    (untrained / "config.json").write_text(json.dumps(th.config("/nowhere").to_dict()))
    (untrained / "dataset_info.json").write_text(json.dumps(
        {"name": "fma/small", "class_names": ["a", "b"], "sample_rate": RATE}))
    empty_dir = tmp_path / "no_audio"
    empty_dir.mkdir()
    song = os.path.join(music, "long.mp3")
    cases = [([str(gan), song], "is a 'stargan' run where a classifier run is needed"),
             ([str(untrained), song], "has no checkpoint"),
             ([str(tmp_path), song], "config.json not found"),
             ([classifier_run, song, "--window_seconds", "0.5"], "shorter than the run's 1 s crop"),
             ([classifier_run, str(empty_dir)], "No audio files"),
             ([classifier_run, os.path.join(music, "broken.mp3")], "no file could be classified")]
    argvs = [["--workdir", workdir, *rest] for (workdir, *rest), _ in cases]
    results = th.cli_exits("jaxgenre.tools.predict", argvs, devices=2)
    for (_, message), (code, log) in zip(cases, results, strict=True):
        assert code != 0 and message in log and "Traceback" not in log, log[-2000:]
