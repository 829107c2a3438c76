r"""Turns songs into other genres with a trained style-transfer run.

  python -m jaxgenre.transfer --workdir runs/stargan_demo --to Rock song.mp3 [more.flac music/]
      [--input song.mp3] [--output out.wav] [--checkpoint best|latest|STEP]
      [--classifier CLASSIFIER_WORKDIR] [--strength 0..1]

Files of any length and any format librosa reads (resampled to the run's rate, mixed to mono),
named as arguments or with --input; directories are searched at any depth for audio files
(`audio_files.EXTENSIONS`). Each file's log-mel is converted in overlapping windows cross-faded
into one another, then vocoded in one pass (`api.StyleTransfer`); writes a WAV (or FLAC:
--output's suffix) and a PNG of the log-mel before and after.

Outputs: one file to one genre writes --output (default `<stem>_<genre>.wav`); one file `--to
all` writes `<genre>.wav` per genre into --output (a directory, default `<stem>_transfer/`);
several files write `<stem>_<genre>.wav` into --output (a directory, default the current one).
With --classifier, a genre classifier run names each input's genre, and `--to all` skips it
(without one, every genre is a target). Outputs are checked before any conversion (writable,
none of them an input) and each appears whole or not at all; a file that cannot be read is
skipped and named (exit 1 when none was converted); a silent input, or one shorter than the
run's crop, is converted with a warning.
"""
from jaxgenre.core import cli

# First of all: before TensorFlow and JAX start their threads and loggers.
cli.prepare_process(relaunch=__name__ == "__main__")

import sys

import numpy as np
from absl import app, flags
from etils import epath

from jaxgenre import api
from jaxgenre.audio import vocoder
from jaxgenre.core import errors, outputs
from jaxgenre.data import audio_files
from jaxgenre.run import rundir
from jaxgenre.transfer import generator, report

_WORKDIR = flags.DEFINE_string("workdir", None, "A style-transfer run's --workdir "
                               "(configs/stargan.py or configs/autoencoder.py).", required=True)
_INPUT = flags.DEFINE_multi_string("input", [], "An audio file or directory (repeatable; files "
                                   "and directories may also follow the flags).")
_TO = flags.DEFINE_string("to", None, "Target genre name, or 'all'.", required=True)
_OUTPUT = flags.DEFINE_string("output", None, "Output WAV or FLAC for one file and one genre; "
                              "otherwise a directory (see the module docstring).")
_CHECKPOINT = flags.DEFINE_string("checkpoint", "best", "'best', 'latest' or a step number.")
_CLASSIFIER = flags.DEFINE_string("classifier", None, "A genre classifier run's --workdir: "
                                  "names each input's genre, which --to all then skips.")
_WINDOW = cli.float_flag("window_seconds", None, "Conversion window (default: 2 x the run's "
                         "training crop; at least the crop); windows overlap by half.", above=0)
_GL_ITERS = cli.integer_flag("gl_iters", vocoder.VocoderConfig.n_iter, "Griffin-Lim iterations.",
                             minimum=0)
_STRENGTH = cli.float_flag("strength", 1.0, "How far to convert: 0 keeps the input (through the "
                           "vocoder), 1 the full conversion; the log-mel change is scaled.",
                           minimum=0.0, maximum=1.0)


_FORMATS = {".wav": "WAV", ".flac": "FLAC"}  # 16-bit PCM formats, by --output suffix
GENRES_AT_ONCE = 4


def output_paths(paths: list[str], to: str, names: list[str]) -> dict[str, dict[str, epath.Path]]:
    """{input path: {target genre: output audio path}} from --to, --output and the inputs (see
    the module docstring), each checked to be writable and not an input, so nothing is
    converted for nothing."""
    targets = names if to == "all" else [to]
    safe = {t: audio_files.file_stem(t) for t in targets}  # 'Old-Time / Historic' is no file name
    if len(paths) == 1 and to != "all":
        path = _OUTPUT.value or f"{epath.Path(paths[0]).stem}_{safe[to]}.wav"
        if epath.Path(path).suffix.lower() not in _FORMATS:
            raise errors.UserError(f"--output {path}: end it in {' or '.join(_FORMATS)} (the "
                                   "audio format is taken from the suffix).")
        outputs.check_writable(path)
        planned = {paths[0]: {to: epath.Path(path)}}
    elif len(paths) == 1:
        out_dir = _OUTPUT.value or f"{epath.Path(paths[0]).stem}_transfer"
        outputs.check_writable(out_dir, directory=True)
        planned = {paths[0]: {t: epath.Path(out_dir) / f"{safe[t]}.wav" for t in targets}}
    else:
        out_dir = _OUTPUT.value or "."
        if epath.Path(out_dir).suffix.lower() in _FORMATS:
            raise errors.UserError(f"--output {out_dir}: {len(paths)} files write one output each "
                                   "per genre; pass a directory.")
        outputs.check_writable(out_dir, directory=True)
        planned, stems = {}, set()
        for p in paths:  # music/a/song.mp3 and music/b/song.mp3: song_*.wav and song_2_*.wav
            stem = unique = epath.Path(p).stem
            n = 1
            while unique in stems:
                n += 1
                unique = f"{stem}_{n}"
            stems.add(unique)
            planned[p] = {t: epath.Path(out_dir) / f"{unique}_{safe[t]}.wav" for t in targets}
    outputs.refuse_inputs([a for per_file in planned.values() for p in per_file.values()
                           for a in (p, p.with_suffix(".png"))], paths)
    return planned


def transfer(inputs: list[str]) -> list[str]:
    """What the command line does (see the module docstring); returns the paths written."""
    import soundfile
    # What the run is, its genres and rate, that the inputs exist, and the outputs, before any
    # model is restored (the inputs are decoded one by one after).
    config = rundir.load_config(_WORKDIR.value)
    rundir.check_task(_WORKDIR.value, config, generator.GENERATOR_TASKS)
    data = rundir.data_spec(_WORKDIR.value, config)
    names = list(data.class_names)
    if _TO.value != "all" and _TO.value not in names:
        raise errors.UserError(f"Unknown genre {_TO.value!r} for --to; valid: "
                               f"{', '.join(names)}, all.")
    if _WINDOW.value is not None:
        api.check_window(_WINDOW.value, config.data.crop_seconds)
    paths = audio_files.find(inputs)
    if not paths:
        raise errors.UserError(f"No audio files ({', '.join(audio_files.EXTENSIONS)}) in "
                               f"{', '.join(inputs)}.")
    if not any(epath.Path(p).is_file() for p in paths):  # else each is named as it is skipped
        raise errors.UserError("; ".join(f"{p}: no such file" for p in paths) + ".")
    planned = output_paths(paths, _TO.value, names)
    model = api.StyleTransfer.from_run(_WORKDIR.value, _CHECKPOINT.value,
                                       window_seconds=_WINDOW.value, gl_iters=_GL_ITERS.value)
    classifier = None
    if _CLASSIFIER.value:
        classifier = api.Classifier.from_run(_CLASSIFIER.value, mesh=model.method.mesh)
        classifier.judge.check_labels(names, f"the run {_WORKDIR.value}")
    mel = model.method.run.task.mel
    written = []
    for path, targets in planned.items():
        try:
            audio = audio_files.read(path, model.sample_rate)
        except (FileNotFoundError, ValueError) as e:
            print(f"skipped: {e}", file=sys.stderr)
            continue
        warning = audio_files.verdict_warning(audio, model.sample_rate, data.crop_samples)
        if warning:
            print(f"warning: {path}: {warning}.", file=sys.stderr)
        if classifier:
            p = classifier.predict(audio, model.sample_rate, path).probabilities
            top = np.argsort(-p, kind="stable")
            print(f"{path}: input genre (by {_CLASSIFIER.value}): "
                  + ", ".join(f"{names[i]} {p[i]:.2f}" for i in top[:3]))
            if _TO.value == "all":
                targets = {t: out for t, out in targets.items() if t != names[top[0]]}
        # GENRES_AT_ONCE genres of this file per pass: one vocoder run for them (memory grows
        # with their number times the file's length)
        pending = list(targets.items())
        converted = np.concatenate([
            model.convert_many(np.repeat(audio[None], len(chunk), axis=0), [t for t, _ in chunk],
                               [_STRENGTH.value] * len(chunk))
            for chunk in (pending[i:i + GENRES_AT_ONCE]
                          for i in range(0, len(pending), GENRES_AT_ONCE))])
        for (target, out_path), out in zip(pending, converted, strict=True):
            out, gain_db = audio_files.peak_safe(out)
            with outputs.replacing(out_path, "wb") as f:
                soundfile.write(f, out, model.sample_rate,
                                format=_FORMATS[out_path.suffix.lower()], subtype="PCM_16")
            png = str(out_path.with_suffix(".png"))
            report.write_before_after(png, audio, out, model.sample_rate,
                                      ("input", f"to {target}"), mel.n_fft, mel.hop_length,
                                      mel.n_mels, mel.top_db)
            written += [str(out_path), png]
            level = (f" (scaled by {gain_db:.1f} dB: its peak would have clipped)" if gain_db
                     else "")
            print(f"{path} to {target}: wrote {out_path}{level} and {png}", flush=True)
    if not written:
        raise errors.UserError("no file could be converted (each is named above with the "
                               "reason).")
    return written


def main(argv):
    """argv: the program, then the files and directories (after parsing)."""
    inputs = [*_INPUT.value, *argv[1:]]
    if not inputs:
        raise app.UsageError("Pass one or more audio files or directories (after the flags, or "
                             "with --input).")
    cli.quiet_logs()
    transfer(inputs)


def entry_point() -> None:
    """Parses the flags and runs `main` (the `python -m` entry point)."""
    cli.run(main)


if __name__ == "__main__":
    entry_point()
