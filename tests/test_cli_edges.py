"""The command lines at their edges, as a new user meets them: output files whole or absent,
inputs never overwritten, every numeric flag bounded, user errors in one or two lines, and
warnings where a verdict means little. Each case was a failure before (see the docstrings)."""
import ast
import csv
import json
import os
import pathlib
import shutil
import signal
import subprocess
import sys
import threading
import time

import numpy as np
import pytest
import soundfile

from jaxgenre.core import errors, outputs
from jaxgenre.transfer import evaluator
from tests import train_helpers as th

RATE = 22050
PACKAGE = pathlib.Path(th.ROOT) / "jaxgenre"


def _sine(path, seconds: float, amplitude: float = 0.5, rate: int = RATE) -> str:
    t = np.arange(int(seconds * rate)) / rate
    soundfile.write(str(path), (amplitude * np.sin(2 * np.pi * 440 * t)).astype(np.float32), rate)
    return str(path)


@pytest.fixture
def gan_workdir(tmp_path):
    """A style-transfer run's files without checkpoints: enough for every check the transfer
    CLI makes before it restores a model."""
    workdir = tmp_path / "gan"
    workdir.mkdir()
    (workdir / "config.json").write_text(json.dumps(th.gan_config("/nowhere").to_dict()))
    (workdir / "dataset_info.json").write_text(json.dumps(
        {"name": "fma/small", "class_names": ["Rock", "Pop"], "sample_rate": RATE}))
    return str(workdir)


# ---------------------------------------------------------------- outputs: whole or absent
def test_a_failed_write_leaves_the_earlier_file_and_no_temporary_file(tmp_path):
    target = tmp_path / "preds.csv"
    target.write_text("earlier\n")
    with pytest.raises(RuntimeError), outputs.replacing(target, "w") as f:
        f.write("half of a new file")
        raise RuntimeError("the disk is full")
    assert target.read_text() == "earlier\n" and os.listdir(tmp_path) == ["preds.csv"]
    with outputs.replacing(target, "w") as f:
        f.write("new\n")
    assert target.read_text() == "new\n" and os.listdir(tmp_path) == ["preds.csv"]
    # a directory target named with a trailing slash (as tab completion writes it)
    with outputs.staged(f"{tmp_path / 'export'}{os.sep}") as staging:
        os.mkdir(staging)
        (pathlib.Path(staging) / "saved_model.pb").write_bytes(b"model")
    assert os.listdir(tmp_path / "export") == ["saved_model.pb"]


def test_an_interrupted_write_keeps_what_it_wrote_beside_the_target(tmp_path):
    target, partial = tmp_path / "preds.csv", tmp_path / "preds.csv.partial"
    target.write_text("earlier\n")
    with pytest.raises(KeyboardInterrupt), outputs.replacing(target, "w", partial) as f:
        f.write("row 1\n")
        raise KeyboardInterrupt
    assert target.read_text() == "earlier\n" and partial.read_text() == "row 1\n"


def test_writers_racing_for_one_path_leave_one_whole_file(tmp_path):
    """Before: two `predict`s with one --output left 17 KB of NUL bytes and lost 176 of 200
    rows (both truncated and appended to the same file)."""
    target = tmp_path / "preds.csv"
    rows = {w: [f"{w},{i}\n" for i in range(2000)] for w in "ab"}

    def write(w):
        with outputs.replacing(target, "w") as f:
            for row in rows[w]:
                f.write(row)
                f.flush()
    threads = [threading.Thread(target=write, args=(w,)) for w in rows]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    lines = target.read_text().splitlines(keepends=True)
    assert lines in (rows["a"], rows["b"])


def test_unwritable_outputs_and_outputs_that_are_inputs_are_refused(tmp_path):
    song = _sine(tmp_path / "song.wav", 0.1)
    link = tmp_path / "link.wav"
    link.symlink_to(song)
    for out in (song, str(link)):
        with pytest.raises(errors.UserError, match="is the input"):
            outputs.refuse_inputs([out], [song])
    a_file = tmp_path / "file"
    a_file.write_text("")
    with pytest.raises(errors.UserError, match="is a file, not a directory"):
        outputs.check_writable(a_file / "sub" / "x.csv")
    with pytest.raises(errors.UserError, match="is a directory; pass a file path"):
        outputs.check_writable(tmp_path)
    with pytest.raises(errors.UserError, match="is a file; pass a directory path"):
        outputs.check_writable(a_file, directory=True)
    outputs.check_writable(tmp_path / "new" / "x.csv")  # made when written, not by the check
    outputs.check_writable(tmp_path / "new", directory=True)
    assert sorted(os.listdir(tmp_path)) == ["file", "link.wav", "song.wav"]


def _calls(tree):
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            f = node.func
            yield node, (f.attr if isinstance(f, ast.Attribute) else
                         f.id if isinstance(f, ast.Name) else "")


def _writes_a_file(node: ast.Call, name: str) -> bool:
    through_outputs = isinstance(node.func, ast.Attribute) and isinstance(
        node.func.value, ast.Name) and node.func.value.id == "outputs"
    if name in ("write_text", "write_bytes"):
        return not through_outputs
    if name == "open":
        modes = [a for a in node.args if isinstance(a, ast.Constant) and isinstance(a.value, str)]
        modes += [k.value for k in node.keywords if k.arg == "mode"]
        return any(isinstance(m, ast.Constant) and set(m.value) & set("wax") for m in modes)
    return False


# Files written other than through `outputs`, each with why that is right.
_DIRECT_WRITES = {
    "core/outputs.py": "the helper itself",
    "run/restarts.py": "appends one line per restart to config_changes.jsonl",
    "pretrained/musicnn_wheel.py": "a checkpoint unpacked into a TemporaryDirectory to read it",
    "pretrained/musicnn_original.py": "a checkpoint unpacked into a TemporaryDirectory to read it",
}


def test_every_file_the_package_writes_goes_through_outputs():
    found = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        name = str(path.relative_to(PACKAGE))
        for node, call in _calls(ast.parse(path.read_text())):
            if _writes_a_file(node, call) or call == "savefig" and any(
                    isinstance(a, ast.Name) and a.id in ("png", "path", "out") for a in node.args):
                found.setdefault(name, []).append(node.lineno)
    assert set(found) == set(_DIRECT_WRITES), found


def test_every_numeric_flag_is_defined_with_its_bounds_in_one_place():
    """Before: `--window_seconds -1` ran for minutes, `--gl_iters -1` changed the output."""
    direct = [f"{p.relative_to(PACKAGE)}:{node.lineno}" for p in sorted(PACKAGE.rglob("*.py"))
              if p.name != "cli.py"
              for node, call in _calls(ast.parse(p.read_text()))
              if call in ("DEFINE_integer", "DEFINE_float")]
    assert direct == []


# ---------------------------------------------------------------- the tools, as users run them
def test_predict_keeps_an_earlier_csv_refuses_its_input_and_warns_on_silence(tiny_classifier,
                                                                             tmp_path):
    """Before: a run with every input unreadable truncated --output to its header; a silent
    file and a 0.1 s clip got confident genres without a word; a file with NaN samples was
    'not audio librosa reads'; a half-written config.json gave a JSON error without its name."""
    song = _sine(tmp_path / "song.wav", 2.0)
    short = _sine(tmp_path / "short.wav", 0.1)
    silent = str(tmp_path / "silent.wav")
    soundfile.write(silent, np.zeros(3 * RATE, np.float32), RATE)
    nan = str(tmp_path / "nan.wav")
    soundfile.write(nan, np.full(RATE, np.nan, np.float32), RATE, subtype="FLOAT")
    broken = tmp_path / "broken.mp3"
    broken.write_bytes(b"not audio")
    earlier = tmp_path / "earlier.csv"
    earlier.write_text("path,genre\nkept.wav,Rock\n")
    half, empty = tmp_path / "half", tmp_path / "empty"
    for workdir, text in ((half, (pathlib.Path(tiny_classifier) / "config.json").read_text()[:53]),
                          (empty, "{}")):
        shutil.copytree(tiny_classifier, workdir)
        (workdir / "config.json").write_text(text)
    cases = [
        (["--workdir", tiny_classifier, "--output", str(earlier), str(broken)],
         1, "no file could be classified"),
        (["--workdir", tiny_classifier, "--output", song, song], 1, "is the input"),
        (["--workdir", str(half), song], 1, f"{half / 'config.json'} is not valid JSON"),
        (["--workdir", str(empty), song], 1, "lacks data.name, data.crop_seconds, model.name"),
        (["--workdir", tiny_classifier, nan, song], 0,
         f"{RATE} of its {RATE} samples are not finite"),
        (["--workdir", tiny_classifier, "--window_seconds", "0", song], 1,
         "--window_seconds must be a finite number greater than 0"),
        (["--workdir", tiny_classifier, short, silent, song], 0, "warning: "),
    ]
    results = th.cli_exits("jaxgenre.tools.predict", [args for args, _, _ in cases], devices=2)
    for (args, code, message), (got, log) in zip(cases, results, strict=True):
        assert got == code and message in log and "Traceback" not in log, (args, log[-2000:])
    assert earlier.read_text() == "path,genre\nkept.wav,Rock\n"
    assert soundfile.read(song)[0].shape == (2 * RATE,)  # the input refused as --output is intact
    warnings = [line for line in results[-1][1].splitlines() if "warning: " in line]
    assert len(warnings) == 2, results[-1][1]
    assert "short.wav: 0.10 s long, shorter than the model's 1 s crop" in warnings[0]
    assert "silent.wav: silent (peak all zeros)" in warnings[1]


def test_transfer_refuses_bad_outputs_and_windows_before_converting(gan_workdir, tmp_path):
    """Before: `--output` the input overwrote the source; a directory as --output failed with
    `TypeError: No format specified` after converting; `--window_seconds -1` ran for minutes,
    0 meant the default, `--gl_iters -1` was taken."""
    song = _sine(tmp_path / "song.wav", 1.0)
    before = pathlib.Path(song).read_bytes()
    a_dir = tmp_path / "a_dir"
    a_dir.mkdir()
    base = ["--workdir", gan_workdir, "--input", song, "--to", "Rock"]
    cases = [(["--output", song], "is the input"),
             (["--output", str(a_dir)], f"--output {a_dir}: end it in .wav or .flac"),
             (["--to", "all", "--output", song], "is a file; pass a directory path"),
             (["--window_seconds", "-1"], "--window_seconds must be a finite number greater than 0"),
             (["--window_seconds", "0"], "--window_seconds must be a finite number greater than 0"),
             (["--window_seconds", "0.5"], "shorter than the run's 1 s crop"),
             (["--gl_iters", "-1"], "--gl_iters must be an integer from 0 up")]
    results = th.cli_exits("jaxgenre.tools.transfer", [base + args for args, _ in cases])
    for (args, message), (code, log) in zip(cases, results, strict=True):
        assert code == 1 and message in log and "Traceback" not in log, (args, log[-2000:])
    assert pathlib.Path(song).read_bytes() == before and os.listdir(a_dir) == []


def test_weights_that_are_not_hdf5_are_named(tmp_path):
    bad = tmp_path / "mobilenet_v2.h5"
    bad.write_text("<html>a login page, not weights</html>")
    results = th.cli_exits("jaxgenre.tools.import_weights",
                           [["mobilenet_v2", "--weights", str(bad), "--out", str(tmp_path / "o")],
                            ["mobilenet_v2", "--weights", str(bad), "--alpha", "2",
                             "--out", str(tmp_path / "o")]])
    assert results[0][0] == 1 and f"--weights {bad} is not an HDF5 file" in results[0][1]
    assert results[1][0] == 1 and "--alpha must be a finite number at least 0.35 and at most 1.4" \
        in results[1][1]


def test_transfer_examples_are_of_the_evaluated_targets_and_the_same_clips_for_every_method():
    """Before: `evaluate_transfer --targets Rock` wrote examples converted to other genres."""
    source, track = np.array([0, 1, 2, 3, 1]), np.array([10, 11, 12, 13, 14])
    # the target-free identity run chooses: clips in order, each to the next evaluated target
    chosen = evaluator.example_rows(source, source, track, 0, [2], 4, 3, set())
    assert chosen == [(0, 0, 2), (1, 1, 2), (3, 3, 2)]  # 12 is genre 2 itself: no target
    pairs = {track[j]: t for j, _, t in chosen}
    # a method per target (offset 1: genre + 1) keeps only those clips, at their target
    by_offset = {o: evaluator.example_rows(source, (source + o) % 4, track, o, [2], 4, 3, set(),
                                           pairs) for o in (1, 2, 3)}
    assert by_offset == {1: [(1, 1, 2)], 2: [(0, 0, 2)], 3: [(3, 3, 2)]}
    assert evaluator.example_rows(source, source, track, 0, [2], 4, 2, {10}, pairs) == [
        (1, 1, 2), (3, 3, 2)]


def _user_error_processes(tiny_classifier, gan_workdir, tmp_path):
    """(argv, what the message must say) for user errors met in a fresh process each."""
    song = _sine(tmp_path / "song.wav", 1.0)
    damaged = tmp_path / "damaged"
    shutil.copytree(tiny_classifier, damaged)
    step = damaged / "checkpoints" / "4"
    for array in step.glob("*/d/*"):  # only the array data: what the judge reads fails late
        os.truncate(array, array.stat().st_size // 2)
    a_file = tmp_path / "file"
    a_file.write_text("")
    train = [sys.executable, "-m", "jaxgenre.train", "--config", "configs/mfcc_cnn.py:demo",
             "--workdir", str(tmp_path / "run")]
    return [
        ([sys.executable, "-m", "jaxgenre.evaluate", "--workdir", str(tmp_path / "nowhere")],
         "config.json not found"),
        ([sys.executable, "-m", "jaxgenre.evaluate", "--workdir", tiny_classifier,
          "--checkpoint", "999999"], "No checkpoint '999999'"),
        ([sys.executable, "-m", "jaxgenre.predict", "--workdir", str(damaged), song],
         f"Checkpoint {step} cannot be read"),
        ([sys.executable, "-m", "jaxgenre.predict", "--workdir", tiny_classifier, "--output",
          str(a_file / "preds.csv"), song], "is a file, not a directory"),
        ([sys.executable, "-m", "jaxgenre.transfer", "--workdir", gan_workdir, "--input", song,
          "--to", "Rock", "--output", str(tmp_path)], "end it in .wav or .flac"),
        ([*train, "--config.total_steps=0"], "total_steps must be positive"),
        ([*train, "--config.model.name=nonexistent"], "Unknown model.name 'nonexistent'"),
    ]


def test_user_errors_print_at_most_two_lines_and_verbosity_shows_the_traceback(
        tiny_classifier, gan_workdir, tmp_path):
    """Before: 20-25 lines of traceback (evaluate, train, transfer), and 424-900 lines of
    `Event loop is closed` after a checkpoint whose arrays do not read."""
    cases = _user_error_processes(tiny_classifier, gan_workdir, tmp_path)
    verbose = [*cases[0][0], "--verbosity=1"]
    env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=1")
    procs = [subprocess.Popen(argv, cwd=th.ROOT, env=env, stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True)
             for argv in [argv for argv, _ in cases] + [verbose]]
    logs = [p.communicate(timeout=300)[0] for p in procs]
    for (argv, message), proc, log in zip(cases, procs, logs):
        lines = [line for line in log.splitlines() if line.strip()]
        assert proc.returncode == 1 and len(lines) <= 2, (argv, log[-3000:])
        assert lines[-1].startswith("error: ") and message in lines[-1], (argv, log[-3000:])
    assert procs[-1].returncode == 1 and "Traceback (most recent call last)" in logs[-1]
    assert "config.json not found" in logs[-1]


def test_sigterm_landing_in_a_librarys_cleanup_still_exits_143(tmp_path):
    """CI once saw SIGTERM's SystemExit raised inside tqdm's lock handling, whose release then
    failed (RuntimeError) and replaced it: predict exited 1, not 143. Here the signal arrives
    inside a block whose cleanup fails the same way; the output is still unwound."""
    from jaxgenre.core import cli

    class FailingCleanup:
        def __enter__(self):
            return self

        def __exit__(self, *exc):
            raise RuntimeError("cannot release un-acquired lock")

    def main(argv):
        with outputs.staged(tmp_path / "out.txt") as staged, FailingCleanup():
            pathlib.Path(staged).write_text("half")
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(5)  # the handler raises before this ends

    previous = signal.signal(signal.SIGTERM, signal.SIG_DFL)
    try:
        with pytest.raises(SystemExit) as stopped:
            cli.call_main(main, ["prog"])
    finally:
        signal.signal(signal.SIGTERM, previous)
    assert stopped.value.code == 143 and isinstance(stopped.value.__cause__, RuntimeError)
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(RuntimeError):  # without a SIGTERM the error is the error
        cli.call_main(lambda argv: FailingCleanup().__exit__(), ["prog"])


@pytest.mark.slow  # two predict processes at once, and one stopped by SIGTERM
def test_two_predicts_into_one_csv_and_a_sigterm_leave_whole_files(tiny_classifier, tmp_path):
    songs = [_sine(tmp_path / f"song{i:02d}.wav", 1.0 + i / 10) for i in range(24)]
    out = tmp_path / "preds.csv"
    argv = [sys.executable, "-m", "jaxgenre.predict", "--workdir", tiny_classifier, "--output",
            str(out), *songs]
    procs = [subprocess.Popen(argv, cwd=th.ROOT, stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True) for _ in range(2)]
    logs = [p.communicate(timeout=300)[0] for p in procs]
    assert [p.returncode for p in procs] == [0, 0], logs
    with open(out, newline="") as f:
        rows = list(csv.reader(f))
    assert [r[0] for r in rows[1:]] == songs and b"\0" not in out.read_bytes()

    out.write_text("earlier\n")
    # Enough files that the run cannot finish before the signal lands: with 480, a loaded
    # machine once let it classify them all and replace the CSV between this test reading the
    # first row and sending SIGTERM.
    proc = subprocess.Popen([*argv, *songs * 100], cwd=th.ROOT, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True,
                            env=dict(os.environ, PYTHONUNBUFFERED="1"))
    for line in proc.stdout:  # stopped once it has classified a file
        if line.startswith(songs[0]):
            break
    proc.terminate()
    log = proc.communicate(timeout=120)[0]
    assert proc.returncode == 143 and out.read_text() == "earlier\n", log[-2000:]
    with open(f"{out}.partial", newline="") as f:
        partial = list(csv.reader(f))
    assert partial[0][:2] == ["path", "genre"] and len(partial) >= 2
    assert all(len(r) == len(partial[0]) for r in partial)
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []
