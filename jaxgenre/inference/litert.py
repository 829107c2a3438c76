"""A classifier run as LiteRT (TensorFlow Lite) models, float32 or post-training int8, to serve
on CPUs.

  convert            a restored run -> two .tflite flatbuffers: the frontend, one crop float32
                     [1, crop] -> the network's input; the network, that input -> logits [1, C]
  calibration_crops  crops of the run's training clips, which set the int8 activation ranges
  LiteJudge          an exported directory -> clip probabilities of audio [B, N], as `Judge`

The two parts are `classifier.predict_step`'s (`model_input` with the run's frontend settings,
the network with the run's averaged weights: our inference path, not a copy), converted by
jax2tf (StableHLO) and TensorFlow's LiteRT converter. The frontend computes in float32. int8 is the
converter's full-integer post-training quantization of the network: weights int8 per output
channel, activations int8 per tensor with ranges measured on the calibration crops' frontend
outputs; an op without an int8 kernel stays float (the converter's fallback), and the network
takes and returns float32. What `judge_step` does around the model (int16 rounding, crops evenly
spaced over the real audio, the mean of the crops' logits, softmax or sigmoid) is done here with
the same helpers, so a LiteJudge and a Judge see the same crops.
"""
import json
import os
import warnings

import jax
import numpy as np
import tensorflow as tf
import tensorflow_datasets as tfds
from flax import nnx
from jax.experimental import jax2tf
from scipy import special

from jaxgenre import models
from jaxgenre.core import errors
from jaxgenre.data import input_pipeline
from jaxgenre.inference import judge
from jaxgenre.run import rundir
from jaxgenre.tasks import classifier

FRONTEND_FILE = "frontend.tflite"
NETWORK_FILE = "network.tflite"
INFO_FILE = "export_info.json"
QUANTIZE = ("none", "int8")


class LiteError(errors.UserError, ValueError):
    """The run cannot be converted, or the directory holds no LiteRT model: the message names
    the problem and the fix."""


def convert(run: rundir.Run, quantize: str = "none", calibration: np.ndarray | None = None
            ) -> tuple[bytes, bytes]:
    """The two .tflite flatbuffers of `run` (a restored classifier run), (frontend, network).

    frontend (float32 always): `waveform` float32 [1, crop] in [-1, 1] at the run's rate -> the
    network's input (a log-mel [1, T, F, 1], or the waveform for a raw-audio model). Quantizing
    it would put the waveform, the power spectrum and its log on int8 scales, losing most of
    the signal, and the FFT has no int8 kernel anyway.
    network: that input -> logits float32 [1, num_genres]; quantize 'none' (float32) or 'int8'
    (`calibration` float32 [K, crop] in [-1, 1]: crops of training audio, `calibration_crops`,
    whose frontend outputs set the activation ranges).
    """
    if quantize not in QUANTIZE:
        raise LiteError(f"quantize={quantize!r}: pick one of {', '.join(QUANTIZE)}.")
    if quantize == "int8" and (calibration is None or len(calibration) == 0):
        raise LiteError("int8 needs calibration crops (calibration_crops) to set activation "
                        "ranges.")
    weights = jax.device_get(classifier.Averaged.of(run.state))
    config, kind = run.config, classifier.input_kind(run.config)

    def frontend(waveform):
        return classifier.model_input(judge.to_pcm(waveform), kind, config, run.task.mel, None)

    def network(x):
        # The weights are closed over: constants of the module, which the quantizer rewrites.
        model = nnx.merge(run.task.graphdef, weights.ema_params, weights.ema_model_state)
        _scale_and_shift_batch_norms(model)
        return models.logits_and_features(model, x)[0]

    crop = jax.ShapeDtypeStruct((1, run.data.crop_samples), np.float32)
    inputs = jax.eval_shape(frontend, crop)
    representative = None
    if quantize == "int8":
        features = jax.jit(frontend)
        representative = lambda: ([np.asarray(features(c[None]))] for c in calibration)  # noqa: E731
    # With int8, the frontend's constants (the mel filterbank, most of its file) are stored as
    # float16 and widened at load; it still computes in float32.
    return (_to_tflite(frontend, crop, float16_constants=quantize == "int8"),
            _to_tflite(network, inputs, representative))


def _scale_and_shift_batch_norms(model: nnx.Module) -> None:
    """Replaces every BatchNorm of `model` (inference: running statistics) by the same affine
    map as one multiply and one add per channel. LiteRT's converter folds those into the
    preceding convolution's weights and bias; BatchNorm's own form, (x - mean) * rsqrt(var +
    eps) * gamma + beta, was left as three elementwise ops per layer, which in int8 split the
    network into dozens of delegate partitions (slower than float in the conversions tried)."""
    for _, module in list(nnx.iter_modules(model)):
        for name, child in list(vars(module).items()):
            if isinstance(child, nnx.BatchNorm):
                setattr(module, name, _ScaleShift(child))


class _ScaleShift(nnx.Module):
    """A BatchNorm at inference as x * scale + shift, scale and shift float32 [C]."""

    def __init__(self, bn: nnx.BatchNorm):
        scale = bn.scale[...] * jax.lax.rsqrt(bn.var[...] + bn.epsilon)
        self.scale = nnx.Variable(scale)
        self.shift = nnx.Variable(bn.bias[...] - bn.mean[...] * scale)

    def __call__(self, x: jax.Array, use_running_average: bool = True) -> jax.Array:
        return x * self.scale[...] + self.shift[...]


def _to_tflite(function, spec: jax.ShapeDtypeStruct, representative=None,
               float16_constants: bool = False) -> bytes:
    """`function` of one float32 array of `spec`'s shape as a .tflite flatbuffer; int8 (weights
    per channel, activations per tensor, float where an op has no int8 kernel) when a
    `representative` dataset is given; float32 with its constants stored as float16 with
    `float16_constants`."""
    module = tf.Module()
    # Lowered for 'cuda', where our layers take XLA's own convolutions (`lax.platform_dependent`
    # in models/ops): the converter maps those to LiteRT's CONV_2D and DEPTHWISE_CONV_2D, while
    # the CPU branch (shifted multiply-adds, fast for XLA:CPU's training) would become hundreds
    # of elementwise ops in LiteRT. The .tflite itself runs on any CPU.
    module.f = tf.function(
        jax2tf.convert(function, with_gradient=False, native_serialization_platforms=("cuda",)),
        autograph=False, input_signature=[tf.TensorSpec(spec.shape, tf.float32, name="input")])
    converter = tf.lite.TFLiteConverter.from_concrete_functions([module.f.get_concrete_function()],
                                                                module)
    if representative is not None:
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.representative_dataset = representative
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8,
                                               tf.lite.OpsSet.TFLITE_BUILTINS]
    elif float16_constants:
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.target_spec.supported_types = [tf.float16]
    return converter.convert()


def calibration_crops(run: rundir.Run, clips: int, seed: int = 0) -> np.ndarray:
    """float32 [K, crop] in [-1, 1], K <= clips: one crop at a random place in the real audio
    (`num_samples`, as training crops) of each of `clips` clips of the run's training split
    (its built TFDS dataset, at the config's data_dir), shuffled by `seed` so that every genre
    is likely present."""
    config, crop = run.config.data, run.data.crop_samples
    try:
        builder = input_pipeline.load_builder(config.name, config.get("data_dir"), build=False)
    except input_pipeline.DatasetUnavailableError as e:
        raise LiteError(f"int8 calibration reads the run's training clips: {e}") from None
    dataset = builder.as_dataset(split=config.get("train_split", "train"), shuffle_files=False)
    rng = np.random.default_rng(seed)
    out = []
    for example in tfds.as_numpy(dataset.shuffle(4 * clips, seed=seed).take(clips)):
        real = int(example.get("num_samples", len(example["audio"])))
        pcm = example["audio"][:real].astype(np.float32) / 32768.0
        start = rng.integers(0, max(real - crop, 0) + 1)
        out.append(np.pad(pcm[start:start + crop], (0, max(crop - len(pcm), 0))))
    if not out:
        raise LiteError(f"The training split of {config.name} holds no clips to calibrate on.")
    return np.stack(out)


def is_export(path: str) -> bool:
    """Whether `path` is a directory that `jaxgenre.export --format tflite` wrote."""
    return all(os.path.isfile(os.path.join(path, f)) for f in (FRONTEND_FILE, NETWORK_FILE))


class LiteJudge:
    """A LiteRT export (`jaxgenre.export --format tflite`, float or int8) that judges clips as
    `judge.Judge` does, on this process's CPU threads.

    Attributes: workdir (the export directory), config (the run's), class_names, sample_rate,
    crop_samples, dataset, step, quantize ('none' | 'int8'), info (export_info.json).
    """

    def __init__(self, path: str, num_threads: int | None = None):
        if not is_export(path):
            raise LiteError(f"{path} holds no {FRONTEND_FILE} and {NETWORK_FILE}: export them "
                            "with python -m jaxgenre.export --workdir RUN --out DIR --format tflite.")
        with open(os.path.join(path, INFO_FILE)) as f:
            self.info = json.load(f)
        self.workdir, self.config = path, rundir.load_config(path)
        self.class_names, self.sample_rate = self.info["genres"], self.info["sample_rate"]
        self.crop_samples, self.dataset = self.info["crop_samples"], self.info["dataset"]
        self.step, self.quantize = self.info["step"], self.info["quantize"]
        self._multi_label = classifier.multi_label(self.config)
        threads = num_threads or len(os.sched_getaffinity(0))  # the CPUs this process may use
        self._frontend = _Model(os.path.join(path, FRONTEND_FILE), threads)
        self._network = _Model(os.path.join(path, NETWORK_FILE), threads)

    # The same refusal as the JAX judge's, of data labelled differently (it reads the
    # attributes both classes have).
    check_labels = judge.Judge.check_labels

    def compile(self, batch: int, length: int) -> None:
        """Nothing to do: the models were compiled when they were converted (`Judge.compile`'s
        counterpart, so callers treat both alike)."""

    def crop_logits(self, crop: np.ndarray) -> np.ndarray:
        """float32 [C]: the logits of one crop float32 [crop_samples] in [-1, 1]."""
        return self._network(self._frontend(crop[None]))[0]

    def __call__(self, audio: np.ndarray, num_samples: np.ndarray) -> tuple[np.ndarray, None]:
        """audio float32 [B, N] in [-1, 1] at `sample_rate`; num_samples int [B], the real audio
        of each row. Returns (probabilities float32 [B, C], None): the mean of the crops' logits
        through a softmax (a sigmoid per genre for a multi-label run). A row with no real
        audio (a batch's padding) gets zeros without running the models."""
        audio, num_samples = np.asarray(audio, np.float32), np.asarray(num_samples)
        b, n = audio.shape
        crop = self.crop_samples
        audio = np.pad(audio, ((0, 0), (0, max(crop - n, 0))))
        starts = judge.crop_starts(num_samples, input_pipeline.num_eval_crops(n, crop), crop,
                                   xp=np)
        logits = np.zeros((b, len(self.class_names)), np.float32)
        for row in np.flatnonzero(num_samples > 0):
            logits[row] = np.mean([self.crop_logits(audio[row, s:s + crop])
                                   for s in starts[row]], axis=0)
        probabilities = (special.expit(logits) if self._multi_label
                         else special.softmax(logits, axis=-1)).astype(np.float32)
        probabilities[num_samples <= 0] = 0.0
        return probabilities, None


class _Model:
    """One .tflite model of one float32 input and one float32 output, called as a function."""

    def __init__(self, path: str, num_threads: int):
        with warnings.catch_warnings():
            # TF 2.21 warns that tf.lite.Interpreter moves to the ai-edge-litert package; it is
            # the same runtime, and this one comes with tensorflow, which we depend on anyway.
            warnings.simplefilter("ignore")
            self._interpreter = tf.lite.Interpreter(path, num_threads=num_threads)
        self._interpreter.allocate_tensors()
        self._input = self._interpreter.get_input_details()[0]["index"]
        self._output = self._interpreter.get_output_details()[0]["index"]

    def __call__(self, x: np.ndarray) -> np.ndarray:
        self._interpreter.set_tensor(self._input, x.astype(np.float32))
        self._interpreter.invoke()
        return self._interpreter.get_tensor(self._output)
