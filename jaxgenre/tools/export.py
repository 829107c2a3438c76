r"""Exports a genre classifier run as a TensorFlow SavedModel that classifies raw audio, or as
LiteRT (TensorFlow Lite) models, float32 or int8, for CPUs.

  python -m jaxgenre.export --workdir runs/x --out DIR [--checkpoint best|latest|STEP]
      [--clip_seconds S] [--platforms cpu,cuda]
  python -m jaxgenre.export --workdir runs/x --out DIR --quantize int8 [--calibration_clips N]
  python -m jaxgenre.export --workdir runs/x --out DIR --format tflite    # LiteRT, float32

LiteRT (--format tflite, which --quantize int8 implies): DIR holds frontend.tflite (one crop
float32 [1, crop] -> the network's input, float32), network.tflite (-> logits; int8 weights per
channel and activations calibrated on --calibration_clips training clips with --quantize int8),
the run's config.json and export_info.json; `jaxgenre.api.Classifier.from_run(DIR)`, and so
`predict` and `jaxgenre.serve --classifier DIR`, serve it (`jaxgenre.inference.litert`).

The SavedModel holds the whole computation of `jaxgenre.inference.judge.Judge` (the function
`judge.judge_step`, not a copy): int16 PCM rounding, crops evenly spaced over the real audio,
the frontend (log-mel / MFCC / waveform), the model with the run's averaged (`ema`) weights,
logits averaged over the crops and a softmax (a sigmoid per genre for a multi-label run,
data.label 'genres'). Serving it needs only TensorFlow; the weights are
`tf.Variable`s, the computation is a StableHLO module (jax2tf native serialization) lowered for
each of --platforms.

Signatures:
  serving_default(waveform float32 [batch, samples] in [-1, 1] at the run's sample rate)
  classify_padded(waveform float32 [batch, samples], num_samples int32 [batch])
both -> probabilities float32 [batch, num_genres], genre int32 [batch] (argmax),
genre_name string [batch]; for a multi-label run instead probabilities, genres bool
[batch, num_genres] (each genre's probability >= 0.5: any number per clip) and genre_names
string [batch] (those genres' names, comma-separated). Any batch and any length: the graph
inside works on clips of the dataset's stored length (`clip_samples`, e.g. 30 s for FMA;
--clip_seconds overrides it), so each clip is zero-padded to it, or cut to its first
`clip_samples` samples, as the dataset stores clips; the crops cover only the real audio
(its length, or `num_samples` per clip).

DIR also gets `export_info.json` (genres, sample_rate, clip_samples, source workdir, step,
model, signatures). The module keeps `genres`, `sample_rate` and `clip_samples` as variables.
"""
from jaxgenre.core import cli, errors, outputs

cli.prepare_process(relaunch=__name__ == "__main__")  # first: before TensorFlow or JAX loads

import functools
import json
import os
import time

import jax
import numpy as np
import tensorflow as tf
import tensorflow_datasets as tfds
from absl import app, flags, logging
from jax.experimental import jax2tf

import tfds_fma  # noqa: F401  (registers the `fma` datasets with TFDS, for their clip length)
from jaxgenre.core import sharding
from jaxgenre.inference import judge, litert
from jaxgenre.run import rundir
from jaxgenre.tasks import classifier

INFO_FILE = litert.INFO_FILE  # one name for both formats
PLATFORMS = ("cpu", "cuda")
FORMATS = ("saved_model", "tflite")


class ExportError(errors.UserError, ValueError):
    """The run cannot be exported as asked: the message names the problem and the fix."""


def export(workdir: str, out: str, checkpoint: str = "best", clip_seconds: float | None = None,
           platforms: tuple[str, ...] = PLATFORMS) -> dict:
    """Writes the SavedModel of the classifier run in `workdir` to the new directory `out`.

    checkpoint: 'best' | 'latest' | a step. clip_seconds: the clip length the graph works on
    (default: the dataset's stored length). platforms: what the StableHLO is lowered for
    ('cpu', 'cuda', 'rocm', 'tpu'); a SavedModel runs only on these.

    Returns what `export_info.json` holds. Raises `ExportError` for a run that is not a
    classifier, has no (readable) checkpoint, or an `out` that is not empty.
    """
    start = time.time()
    run = _restore(workdir, out, checkpoint)
    clip_samples = _clip_samples(run, clip_seconds)
    genres, rate = list(run.data.class_names), run.data.sample_rate

    weights = jax.device_get(classifier.Averaged.of(run.state))
    leaves, treedef = jax.tree.flatten(weights)
    step = functools.partial(judge.judge_step, graphdef=run.task.graphdef, config=run.config,
                             mel=run.task.mel, mesh=None, crop=run.data.crop_samples)

    def probabilities(leaves, audio, num_samples):
        # mesh=None: plain ops, no shard_map over the training mesh, so the exported module
        # carries no device count and runs on whatever single device serves it.
        return step(jax.tree.unflatten(treedef, leaves), audio, num_samples)[0]

    # `judge_step` needs the clip length as a Python int (its crop count is math.ceil(n / crop),
    # its padding max(crop - n, 0)), so only the batch is a symbolic dimension; the TF side
    # pads or cuts any length to `clip_samples`, which keeps the result Judge's.
    converted = jax2tf.convert(probabilities, polymorphic_shapes=[None, f"(b, {clip_samples})",
                                                                  "(b,)"],
                               with_gradient=False, native_serialization_platforms=platforms)
    multi = classifier.multi_label(run.config)
    module = _ServingModule(converted, leaves, genres, rate, clip_samples, multi)
    signatures = {"serving_default": module.serving_default.get_concrete_function(),
                  "classify_padded": module.classify_padded.get_concrete_function()}

    info = {"genres": genres, "sample_rate": rate, "clip_samples": clip_samples,
            "crop_samples": run.data.crop_samples, "dataset": run.data.name,
            "workdir": os.path.abspath(workdir), "step": run.step,
            "model": run.config.model.name, "platforms": list(platforms),
            "signatures": {
                "serving_default": {"inputs": {"waveform": "float32 [batch, samples]"}},
                "classify_padded": {"inputs": {"waveform": "float32 [batch, samples]",
                                               "num_samples": "int32 [batch]"}},
                "outputs": {"probabilities": f"float32 [batch, {len(genres)}]",
                            **({"genres": f"bool [batch, {len(genres)}]",
                                "genre_names": "string [batch]"} if multi else
                               {"genre": "int32 [batch]", "genre_name": "string [batch]"})}}}
    # The SavedModel and its info in a directory beside `out`, renamed to it when both are
    # written: TF Serving, polling MODEL_DIR for versions, never loads a half-written one.
    with outputs.staged(out) as staging:
        tf.saved_model.save(module, staging, signatures=signatures)
        outputs.write_text(os.path.join(staging, INFO_FILE), json.dumps(info, indent=2))
    logging.info("Exported step %d of %s to %s in %.1f s.", run.step, workdir, out,
                 time.time() - start)
    return info


def export_lite(workdir: str, out: str, checkpoint: str = "best", quantize: str = "none",
                calibration_clips: int = 256) -> dict:
    """Writes the run in `workdir` as LiteRT models to the new directory `out` (see the module
    docstring); quantize 'none' or 'int8' (activation ranges from `calibration_clips` crops of
    the run's training split, which must be readable here). Returns export_info.json's dict."""
    start = time.time()
    run = _restore(workdir, out, checkpoint)
    calibration = (litert.calibration_crops(run, calibration_clips) if quantize == "int8"
                   else None)
    frontend, network = litert.convert(run, quantize, calibration)
    info = {"format": "tflite", "quantize": quantize, "genres": list(run.data.class_names),
            "sample_rate": run.data.sample_rate, "crop_samples": run.data.crop_samples,
            "dataset": run.data.name, "workdir": os.path.abspath(workdir), "step": run.step,
            "model": run.config.model.name,
            "calibration_clips": 0 if calibration is None else len(calibration),
            "bytes": {litert.FRONTEND_FILE: len(frontend), litert.NETWORK_FILE: len(network)}}
    with outputs.staged(out) as staging:
        os.makedirs(staging)
        for name, flatbuffer in ((litert.FRONTEND_FILE, frontend),
                                 (litert.NETWORK_FILE, network)):
            with outputs.replacing(os.path.join(staging, name), "wb") as f:
                f.write(flatbuffer)
        outputs.write_text(os.path.join(staging, "config.json"), run.config.to_json(indent=2))
        outputs.write_text(os.path.join(staging, INFO_FILE), json.dumps(info, indent=2))
    logging.info("Exported step %d of %s to %s (LiteRT, quantize %s) in %.1f s.", run.step,
                 workdir, out, quantize, time.time() - start)
    return info


def _restore(workdir: str, out: str, checkpoint: str) -> rundir.Run:
    """The classifier run's `checkpoint` on one device, once `out` is known to be a new or
    empty directory that can be written; ExportError otherwise, or for any other run."""
    if os.path.exists(out) and (not os.path.isdir(out) or os.listdir(out)):
        raise ExportError(f"--out {out} exists and is not an empty directory: pick a new one "
                          "(TF Serving wants MODEL_DIR/<version>, e.g. models/jaxgenre/1).")
    outputs.check_writable(out, "--out", directory=True)
    # One device is enough to read the weights, which then leave JAX as numpy arrays.
    mesh = sharding.make_mesh(jax.devices()[:1])
    try:
        return judge.restore(workdir, mesh, checkpoint)
    except (ValueError, FileNotFoundError) as e:  # RunError, a bad STEP, no config.json
        raise ExportError(str(e)) from None


def _clip_samples(run: rundir.Run, clip_seconds: float | None) -> int:
    """The clip length the exported graph works on: --clip_seconds, else the stored length of
    the run's dataset, from its TFDS definition (the data itself need not be there)."""
    if clip_seconds is not None:
        samples = round(clip_seconds * run.data.sample_rate)
    else:
        try:
            builder = tfds.builder(run.data.name, data_dir=run.config.data.get("data_dir"))
            samples = int(builder.info.features["audio"].shape[0])
        except (tfds.core.registered.DatasetNotFoundError, ValueError, KeyError, TypeError,
                OSError) as e:  # not registered, no `audio` feature, no fixed length
            raise ExportError(f"The clip length of {run.data.name} is unknown ({e}): pass "
                              "--clip_seconds.") from None
    if samples < run.data.crop_samples:
        raise ExportError(f"Clips of {samples} samples are shorter than the run's crops "
                          f"({run.data.crop_samples}): pass a longer --clip_seconds.")
    return samples


class _ServingModule(tf.Module):
    """The SavedModel's root: the averaged weights as variables, the labels, two signatures."""

    def __init__(self, converted, leaves, genres: list[str], sample_rate: int,
                 clip_samples: int, multi_label: bool):
        super().__init__(name="jaxgenre")
        self._converted = converted
        # Variables, not constants in the graph: the GraphDef stays small (< 2 GB limit).
        self.weights = [tf.Variable(np.asarray(x), trainable=False) for x in leaves]
        self.genres = tf.Variable(genres, trainable=False, dtype=tf.string)
        self.sample_rate = tf.Variable(sample_rate, trainable=False, dtype=tf.int32)
        self.clip_samples = tf.Variable(clip_samples, trainable=False, dtype=tf.int32)
        self._length, self._multi_label = clip_samples, multi_label

    @tf.function(autograph=False, input_signature=[
        tf.TensorSpec([None, None], tf.float32, name="waveform")])
    def serving_default(self, waveform):
        """waveform: float32 [batch, samples] in [-1, 1] at `sample_rate`, all real audio.

        Returns {probabilities: float32 [batch, num_genres], genre: int32 [batch],
        genre_name: string [batch]}, or for a multi-label run {probabilities, genres: bool
        [batch, num_genres], genre_names: string [batch]}. Clips longer than `clip_samples`
        are cut to their first `clip_samples` samples; shorter ones are padded with zeros that
        no crop reaches. An empty batch is an error (symbolic dimensions are >= 1).
        """
        batch, samples = tf.shape(waveform)[0], tf.shape(waveform)[1]
        return self._classify(waveform, tf.fill([batch], samples))

    @tf.function(autograph=False, input_signature=[
        tf.TensorSpec([None, None], tf.float32, name="waveform"),
        tf.TensorSpec([None], tf.int32, name="num_samples")])
    def classify_padded(self, waveform, num_samples):
        """waveform: float32 [batch, samples], clips zero-padded to a common length;
        num_samples: int32 [batch], each clip's real audio (crops cover only that).

        Returns what `serving_default` returns.
        """
        return self._classify(waveform, num_samples)

    def _classify(self, waveform, num_samples):
        length = self._length
        kept = tf.minimum(tf.shape(waveform)[1], length)
        # The stored-clip layout `Judge` sees in evaluation: the first `length` samples,
        # zero-padded, with the real length beside them.
        audio = tf.pad(waveform[:, :length], [[0, 0], [0, length - kept]])
        audio = tf.ensure_shape(audio, [None, length])
        num_samples = tf.clip_by_value(num_samples, 0, kept)
        probabilities = self._converted(self.weights, audio, num_samples)
        if self._multi_label:  # independent sigmoids: every genre at or above one half
            genres = probabilities >= 0.5
            names = tf.ragged.boolean_mask(tf.broadcast_to(self.genres, tf.shape(genres)), genres)
            return {"probabilities": probabilities, "genres": genres,
                    "genre_names": tf.strings.reduce_join(names, axis=-1, separator=",")}
        genre = tf.argmax(probabilities, axis=-1, output_type=tf.int32)
        return {"probabilities": probabilities, "genre": genre,
                "genre_name": tf.gather(self.genres, genre)}


def _define_flags() -> dict:
    """The CLI's flags, defined only when run as a program: `jaxgenre.train` and
    `jaxgenre.evaluate` define --workdir too, and tests import this module beside them."""
    return {
        "workdir": flags.DEFINE_string("workdir", None, "The classifier run's --workdir.",
                                       required=True),
        "out": flags.DEFINE_string("out", None, "A new directory for the SavedModel.",
                                   required=True),
        "checkpoint": flags.DEFINE_string("checkpoint", "best",
                                          "'best', 'latest' or a step number."),
        "clip_seconds": cli.float_flag(
            "clip_seconds", None, "Clip length the graph works on (default: the dataset's).",
            above=0),
        "platforms": flags.DEFINE_list("platforms", list(PLATFORMS),
                                       "Platforms to lower for: cpu, cuda, rocm, tpu."),
        "format": flags.DEFINE_enum("format", None, FORMATS,
                                    "saved_model (default) or tflite (LiteRT; --quantize int8 "
                                    "implies it)."),
        "quantize": flags.DEFINE_enum("quantize", "none", litert.QUANTIZE,
                                      "LiteRT network weights and activations: none (float32) "
                                      "or int8."),
        "calibration_clips": cli.integer_flag(
            "calibration_clips", 256, "Training clips whose crops set int8 activation ranges.",
            minimum=1),
    }


def main(argv, args: dict):
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
    cli.quiet_logs()
    out, quantize = args["out"].value, args["quantize"].value
    kind = args["format"].value or ("tflite" if quantize != "none" else "saved_model")
    if kind == "saved_model" and quantize != "none":
        raise app.UsageError(f"--quantize {quantize} makes LiteRT models: drop --format "
                             "saved_model (or pass --format tflite).")
    if kind == "tflite":
        info = export_lite(args["workdir"].value, out, args["checkpoint"].value, quantize,
                           args["calibration_clips"].value)
        size = sum(info["bytes"].values()) / 1e6
        print(f"Exported {info['model']} step {info['step']} as LiteRT ({quantize}, "
              f"{size:.1f} MB, {len(info['genres'])} genres, {info['sample_rate']} Hz) to {out}.")
        return
    info = export(args["workdir"].value, out, args["checkpoint"].value,
                  args["clip_seconds"].value, tuple(args["platforms"].value))
    print(f"Exported {info['model']} step {info['step']} ({len(info['genres'])} genres, "
          f"{info['sample_rate']} Hz, clips of {info['clip_samples']} samples) to {out}.")


def entry_point() -> None:
    """Parses the flags and runs `main` (the `python -m` entry point)."""
    cli.run(functools.partial(main, args=_define_flags()))


if __name__ == "__main__":
    entry_point()
