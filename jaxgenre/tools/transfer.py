r"""Turns a song into another genre with a trained style-transfer run.

  python -m jaxgenre.transfer --workdir runs/stargan_demo --input song.mp3 --to Rock \
      [--output out.wav] [--checkpoint best|latest|STEP] [--classifier CLASSIFIER_WORKDIR]
      [--strength 0..1]

Any length and any format librosa reads (resampled to the run's rate, mixed to mono): its
log-mel converted in overlapping windows cross-faded into one another, then vocoded in one pass
(`GeneratorMethod.convert_long`); writes a WAV (or FLAC: --output's suffix)
and a PNG of the log-mel before and after. `--to all` writes one WAV per genre into --output (a
directory). The source genre is not needed; with --classifier, a genre classifier run names it
for you. Outputs are checked before any conversion (writable, none of them the input) and each
appears whole or not at all; a silent input, or one shorter than the run's crop, is converted
with a warning.
"""
from jaxgenre.core import cli

# First of all: before TensorFlow and JAX start their threads and loggers.
cli.prepare_process(relaunch=__name__ == "__main__")

import sys

import numpy as np
from absl import app, flags
from etils import epath

from jaxgenre.audio import vocoder
from jaxgenre.core import errors, outputs, sharding
from jaxgenre.data import audio_files
from jaxgenre.inference import judge as judge_lib
from jaxgenre.run import rundir
from jaxgenre.transfer import generator, report

_WORKDIR = flags.DEFINE_string("workdir", None, "A style-transfer run's --workdir "
                               "(configs/stargan.py or configs/autoencoder.py).", required=True)
_INPUT = flags.DEFINE_string("input", None, "An audio file (wav, flac, mp3, ogg, ...).",
                             required=True)
_TO = flags.DEFINE_string("to", None, "Target genre name, or 'all'.", required=True)
_OUTPUT = flags.DEFINE_string("output", None, "Output WAV (default <input stem>_<genre>.wav); a "
                              "directory with --to all (default <input stem>_transfer/).")
_CHECKPOINT = flags.DEFINE_string("checkpoint", "best", "'best', 'latest' or a step number.")
_CLASSIFIER = flags.DEFINE_string("classifier", None, "A genre classifier run's --workdir: "
                                  "prints the input's predicted genre.")
_WINDOW = cli.float_flag("window_seconds", None, "Conversion window (default: 2 x the run's "
                         "training crop; at least the crop); windows overlap by half.", above=0)
_GL_ITERS = cli.integer_flag("gl_iters", vocoder.VocoderConfig.n_iter, "Griffin-Lim iterations.",
                             minimum=0)
_STRENGTH = cli.float_flag("strength", 1.0, "How far to convert: 0 keeps the input (through the "
                           "vocoder), 1 the full conversion; the log-mel change is scaled.",
                           minimum=0.0, maximum=1.0)


_FORMATS = {".wav": "WAV", ".flac": "FLAC"}  # 16-bit PCM formats, by --output suffix


def output_paths(to: str, names: list[str]) -> dict[str, epath.Path]:
    """{target genre: output audio path} from --to, --output and --input (see the flags), each
    checked to be writable and not the input, so nothing is converted for nothing."""
    stem = epath.Path(_INPUT.value).stem
    if to == "all":
        out_dir = _OUTPUT.value or f"{stem}_transfer"
        outputs.check_writable(out_dir, directory=True)
        paths = {t: epath.Path(out_dir) / f"{t}.wav" for t in names}
    else:
        path = _OUTPUT.value or f"{stem}_{to}.wav"
        if epath.Path(path).suffix.lower() not in _FORMATS:
            raise errors.UserError(f"--output {path}: end it in {' or '.join(_FORMATS)} (the "
                                   "audio format is taken from the suffix).")
        outputs.check_writable(path)
        paths = {to: epath.Path(path)}
    outputs.refuse_inputs([p for a in paths.values() for p in (a, a.with_suffix(".png"))],
                          [_INPUT.value])
    return paths


def transfer() -> list[str]:
    import soundfile
    # What the run is, its genres and rate, the input and the outputs, before any model is
    # restored.
    config = rundir.load_config(_WORKDIR.value)
    rundir.check_task(_WORKDIR.value, config, generator.GENERATOR_TASKS)
    data = rundir.data_spec(_WORKDIR.value, config)
    names = list(data.class_names)
    if _TO.value != "all" and _TO.value not in names:
        raise errors.UserError(f"Unknown genre {_TO.value!r} for --to; valid: "
                               f"{', '.join(names)}, all.")
    crop = config.data.crop_seconds
    window = 2 * crop if _WINDOW.value is None else _WINDOW.value
    if window < crop:
        raise errors.UserError(f"--window_seconds {window:g} is shorter than the run's {crop:g} s "
                               f"training crop; pass {crop:g} or more.")
    paths = output_paths(_TO.value, names)
    audio = audio_files.read(_INPUT.value, data.sample_rate)
    warning = audio_files.verdict_warning(audio, data.sample_rate, data.crop_samples)
    if warning:
        print(f"warning: {_INPUT.value}: {warning}.", file=sys.stderr)
    mesh = sharding.make_mesh()
    method = generator.GeneratorMethod(
        _WORKDIR.value, mesh, vocoder.VocoderConfig(n_iter=_GL_ITERS.value),
        checkpoint=_CHECKPOINT.value, strength=_STRENGTH.value)
    if _CLASSIFIER.value:
        judge = judge_lib.Judge(_CLASSIFIER.value, mesh)
        judge.check_labels(names, f"the run {_WORKDIR.value}")
        print(f"input genre (by {_CLASSIFIER.value}): {_predict(judge, audio)}")
    written = []
    for target, path in paths.items():
        out = method.convert_long(audio, names.index(target), window)
        out, gain_db = audio_files.peak_safe(out)
        with outputs.replacing(path, "wb") as f:
            soundfile.write(f, out, method.sample_rate, format=_FORMATS[path.suffix.lower()],
                            subtype="PCM_16")
        png = str(path.with_suffix(".png"))
        mel = method.run.task.mel
        report.write_before_after(png, audio, out, method.sample_rate, ("input", f"to {target}"),
                                  mel.n_fft, mel.hop_length, mel.n_mels, mel.top_db)
        written += [str(path), png]
        level = (f" (scaled by {gain_db:.1f} dB: its peak would have clipped)" if gain_db
                 else "")
        print(f"{target}: wrote {path}{level} and {png}", flush=True)
    return written


def _predict(judge, audio: np.ndarray) -> str:
    import jax
    n = jax.device_count()
    mesh = sharding.make_mesh()
    batch = np.repeat(audio[None], n, axis=0)  # one clip, on every device
    lengths = np.full(n, len(audio), np.int32)
    probs = np.asarray(judge(sharding.from_host(batch, mesh), sharding.from_host(lengths, mesh))[0])[0]
    order = np.argsort(-probs)[:3]
    return ", ".join(f"{judge.class_names[i]} {probs[i]:.2f}" for i in order)


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
    cli.quiet_logs()
    transfer()


def entry_point() -> None:
    """Parses the flags and runs `main` (the `python -m` entry point)."""
    cli.run(main)


if __name__ == "__main__":
    entry_point()
