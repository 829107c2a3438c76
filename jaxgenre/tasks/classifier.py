"""The genre classifier as pure functions: state, model input, train step, predict step.

The trainer jits these with explicit shardings. The model lives as (graphdef, State): the
step merges it inside `jax.jit` (cheaper than `nnx.jit`, which walks the object graph each call).
"""
import functools
from typing import ClassVar, NamedTuple

import jax
import jax.numpy as jnp
import ml_collections
import optax
from absl import logging
from flax import nnx, struct

from jaxgenre import models
from jaxgenre.audio import augment, frontend
from jaxgenre.core import sharding
from jaxgenre.data import spec
from jaxgenre.pretrained import import_dir
from jaxgenre.run import config_checks, rundir
from jaxgenre.tasks import optim


class TrainState(struct.PyTreeNode):
    """Everything a checkpoint holds. Replicated over the mesh."""
    ITEMS: ClassVar = {"model": ("params", "model_state"), "optimizer": ("opt_state",),
                       "ema": ("ema_params", "ema_model_state"), "progress": ("step",)}
    step: jax.Array  # int32 scalar: optimizer updates done
    params: nnx.State  # nnx.Param leaves, float32
    model_state: nnx.State  # BatchNorm statistics
    opt_state: optax.OptState
    ema_params: nnx.State  # exponential moving averages of params and model_state: what
    ema_model_state: nnx.State  # evaluation uses (equal to them when optim.ema_decay = 0)


def mel_config(config: ml_collections.ConfigDict, sample_rate: int) -> frontend.MelConfig:
    f = config.frontend
    return frontend.MelConfig(sample_rate=sample_rate, n_fft=f.n_fft, hop_length=f.hop_length,
                              n_mels=f.n_mels, fmin=f.fmin, fmax=f.fmax, top_db=f.top_db,
                              dft=f.dft, ref=f.ref, compress=f.compress,
                              log_gain=f.log_gain)


def create_model(config: ml_collections.ConfigDict, num_classes: int, rngs: nnx.Rngs):
    return models.create(config.model, num_classes, rngs, trainer_keys=("init_from", "freeze_bn"))


def input_kind(config) -> str:
    """'log_mel' | 'mfcc' | 'waveform': what the configured model eats."""
    return models.get(config.model.name).input_kind


def model_graph(config, num_classes) -> nnx.GraphDef:
    """The model's static structure, from shapes only (no parameters allocated)."""
    return abstract_model(config, num_classes)[0]


def abstract_model(config, num_classes) -> tuple[nnx.GraphDef, nnx.State, nnx.State]:
    """`models.split` of the model, from shapes only (no parameters allocated)."""
    return models.split(nnx.eval_shape(lambda: create_model(config, num_classes, nnx.Rngs(0))))


def init_state(config, num_classes: int, tx: optax.GradientTransformation,
               key: jax.Array) -> TrainState:
    model = create_model(config, num_classes, nnx.Rngs(params=key))
    _, params, model_state = models.split(model)
    return TrainState(step=jnp.zeros((), jnp.int32), params=params, model_state=model_state,
                      opt_state=tx.init(params), ema_params=params, ema_model_state=model_state)


def abstract_state(config, num_classes: int, tx, mesh):
    """(init function, state shapes, state shardings): shapes first, arrays where they live.

    init(key) -> TrainState; jit it with `out_shardings` to create the state already replicated.
    """
    init = functools.partial(init_state, config, num_classes, tx)
    shapes = jax.eval_shape(init, jax.random.key(0))
    return init, shapes, jax.tree.map(lambda _: sharding.replicated(mesh), shapes)


def model_input(audio: jax.Array, kind: str, config, mel: frontend.MelConfig, mesh,
                key: jax.Array | None = None) -> jax.Array:
    """int16 PCM [B, N] -> what a model of `input_kind` eats; augmented when `key` is given.

    waveform: float32 [B, N] in [-1, 1]. log_mel: [B, T, n_mels, 1], dB / 40 + 1 (so roughly
    [-1, 1]), or as computed for `frontend.compress='log10_1p'` (what musicnn was trained on).
    mfcc: [B, T, n_mfcc, 1] of the dB log-mel, / 40.
    """
    x = audio.astype(jnp.float32)
    if key is not None and (kind == "waveform" or mel.ref is not None or mel.compress != "db"):
        # A per-clip dB reference (mel.ref None) subtracts each clip's maximum and so cancels
        # any gain: it is applied only where the model can hear it.
        key, gain_key = jax.random.split(key)
        x = augment.random_gain(gain_key, x, config.augment.gain_db)
    if kind == "waveform":
        return x / 32768.0
    return spectrogram_input(frontend.log_mel(x, mel, mesh=mesh), kind, config, key)


def spectrogram_input(db: jax.Array, kind: str, config, key: jax.Array | None = None
                      ) -> jax.Array:
    """A log-mel [B, T, n_mels] (dB relative to each clip's maximum, or log10(g x + 1) for
    `frontend.compress='log10_1p'`) -> the input of a 'log_mel' or 'mfcc' model [B, T, F, 1],
    through `config.augment`'s time stretch, frequency shift and SpecAugment masks when `key`
    is given."""
    if kind == "mfcc":
        x = frontend.mfcc(db, config.frontend.n_mfcc) / 40.0
    elif config.frontend.compress == "db":
        x = db / 40.0 + 1.0
    else:
        x = db
    x = x[..., None]
    if key is not None:
        a = config.augment
        resize_key, mask_key = jax.random.split(key)
        x = augment.stretch_and_shift(resize_key, x, a.time_stretch, a.freq_shift)
        x = augment.spec_augment(mask_key, x, a.freq_masks, a.freq_mask_width, a.time_masks,
                                 a.time_mask_width)
    return x


class Averaged(NamedTuple):
    """The two fields of a `TrainState` that `predict_step` reads: a classifier's averaged
    weights without its optimizer (the teacher of a distilled run, the SavedModel export)."""
    ema_params: nnx.State
    ema_model_state: nnx.State

    @classmethod
    def of(cls, state: "TrainState") -> "Averaged":
        return cls(state.ema_params, state.ema_model_state)


class Teacher:
    """A trained classifier run's averaged weights, as the teacher of a distilled student
    (`config.distill`): its own frontend and model applied to the student's raw crops.

    Refused unless it was trained on the student's genres, sample rate, crop and label kind, so
    that its probabilities are about the same thing the student learns.
    """

    def __init__(self, config: ml_collections.ConfigDict, data: spec.DataSpec, mesh):
        d = config.distill
        try:
            run = rundir.restore(d.teacher_workdir, mesh, ClassifierTask, d.teacher_checkpoint,
                                 items=("ema",), expect_tasks=("classifier",))
        except FileNotFoundError as e:
            raise rundir.RunError(f"distill.teacher_workdir: {e}") from None
        differ = [f"{what} {theirs} vs {ours}" for what, theirs, ours in (
            ("genres", list(run.data.class_names), list(data.class_names)),
            ("sample rate", run.data.sample_rate, data.sample_rate),
            ("crop seconds", run.config.data.crop_seconds, config.data.crop_seconds),
            ("multi-label", multi_label(run.config), multi_label(config))) if theirs != ours]
        if differ:
            raise rundir.RunError(
                f"The teacher {d.teacher_workdir} was trained differently from this student: "
                f"{'; '.join(differ)} (teacher vs student). Distil from a run on the same "
                "dataset, crop and data.label.")
        logging.info("Distilling from %s, step %d.", d.teacher_workdir, run.step)
        self.graphdef, self.config, self.mel, self.mesh = (run.task.graphdef, run.config,
                                                           run.task.mel, mesh)
        # the train step's third argument
        self.params = Averaged.of(run.state)

    def logits(self, params, audio: jax.Array) -> jax.Array:
        """`params` (this teacher's `Averaged` weights), int16 crops [B, N] -> the teacher's
        logits [B, C] float32, no gradient."""
        logits, _ = predict_step(params, {"audio": audio[:, None]}, graphdef=self.graphdef,
                                 config=self.config, mel=self.mel, mesh=self.mesh)
        return jax.lax.stop_gradient(logits)


def distillation_loss(logits: jax.Array, teacher_probs: jax.Array, temperature: float,
                      multi: bool) -> jax.Array:
    """Mean cross-entropy of the student's logits [B, C] at `temperature` to the teacher's
    probabilities at the same temperature [B, C] (softmax, or a sigmoid per genre when
    `multi`), times T^2 so that its gradients keep their scale as T changes (Hinton et al.).
    Its gradient is the KL divergence's: the teacher's entropy is a constant."""
    scaled = logits / temperature
    loss = (optax.sigmoid_binary_cross_entropy(scaled, teacher_probs) if multi
            else optax.softmax_cross_entropy(scaled, teacher_probs))
    return loss.mean() * temperature ** 2


def train_step(state: TrainState, batch: dict, teacher_params=None, *, graphdef, tx, config,
               mel, mesh, num_classes: int, base_key: jax.Array, teacher: Teacher | None = None):
    """One optimizer update on a global batch {audio int16 [B, N], label int32 [B], or [B, C]
    0/1 when `multi_label(config)`}; with a `teacher` (and its `teacher_params`, an argument so
    that they are not compiled in), the loss mixes in `distillation_loss` (config.distill).

    Returns (new state, metrics {loss, accuracy (multi-label: precision_at_1), grad_norm,
    param_norm, and with a teacher label_loss and distill_loss}: float32 scalars).
    """
    key = jax.random.fold_in(base_key, state.step)  # a resumed run draws the same numbers
    aug_key, mix_key, drop_key = jax.random.split(key, 3)
    x = model_input(batch["audio"], input_kind(config), config, mel, mesh, aug_key)
    multi = multi_label(config)
    labels = targets(batch["label"], num_classes, config.optim.label_smoothing, multi)
    if teacher is not None:  # the teacher hears the crops before the student's augmentations
        t = teacher.logits(teacher_params, batch["audio"]) / config.distill.temperature
        labels = jnp.concatenate([labels, jax.nn.sigmoid(t) if multi else jax.nn.softmax(t)], -1)
    # Mixup mixes multi-hot targets as it mixes one-hots: a clip mixed from two tracks holds
    # both tracks' genres, in proportion (as PANNs trains AudioSet's tags); and the teacher's
    # probabilities alike.
    x, labels = augment.mixup(mix_key, x, labels, config.augment.mixup_alpha)
    labels, teacher_probs = labels[:, :num_classes], labels[:, num_classes:]

    def loss_fn(params):
        params = optim.stop_frozen_gradients(config.optim, params)
        model = nnx.merge(graphdef, params, state.model_state, copy=True)
        # freeze_bn: inference mode (running statistics used and kept, no dropout), as Keras
        # fine-tunes a pretrained base with training=False
        train = not config.model.freeze_bn
        logits = model(x, train=train, rngs=nnx.Rngs(dropout=drop_key))
        # multi-label: the mean over clips and genres, so the scale does not grow with C
        loss = (optax.sigmoid_binary_cross_entropy(logits, labels) if multi
                else optax.softmax_cross_entropy(logits, labels)).mean()
        parts = {}
        if teacher is not None:
            parts = {"label_loss": loss, "distill_loss": distillation_loss(
                logits, teacher_probs, config.distill.temperature, multi)}
            loss = ((1.0 - config.distill.weight) * loss
                    + config.distill.weight * parts["distill_loss"])
        return loss, (logits, models.rest(model), parts)

    (loss, (logits, model_state, parts)), grads = jax.value_and_grad(
        loss_fn, has_aux=True)(state.params)
    updates, opt_state = tx.update(grads, state.opt_state, state.params)
    params = optax.apply_updates(state.params, updates)
    ema = ema_rate(config.optim.ema_decay, state.step)
    new_state = state.replace(
        step=state.step + 1, params=params, model_state=model_state, opt_state=opt_state,
        ema_params=optax.incremental_update(params, state.ema_params, 1.0 - ema),
        ema_model_state=optax.incremental_update(model_state, state.ema_model_state, 1.0 - ema))
    top = jnp.argmax(logits, -1)
    hits = (jnp.take_along_axis(batch["label"], top[:, None], -1) if multi
            else top == batch["label"])
    metrics = {"loss": loss, train_hit_metric(config): jnp.mean(hits),
               "grad_norm": optax.global_norm(grads), "param_norm": optax.global_norm(params)}
    return new_state, {**metrics, **parts}


def multi_label(config: ml_collections.ConfigDict) -> bool:
    """`data.label == 'genres'`: one sigmoid per genre, any number of genres per clip. Runs
    saved before `data.label` existed are single-label."""
    return config.data.label == "genres"


def train_hit_metric(config) -> str:
    """The train metric of the top-scoring genre: 'accuracy' (single-label), or
    'precision_at_1' (multi-label: the share of clips whose top genre is one of theirs)."""
    return "precision_at_1" if multi_label(config) else "accuracy"


def targets(label: jax.Array, num_classes: int, smoothing: float, multi: bool) -> jax.Array:
    """Training targets float32 [B, C] from a batch's labels, label-smoothed.

    Single-label (int32 [B]): the one-hot, smoothed toward uniform over the classes.
    Multi-label (int32 [B, C] 0/1): each genre's binary target smoothed toward 0.5, as Keras'
    `BinaryCrossentropy(label_smoothing)`. `optax.smooth_labels` (toward 1/C) suits a softmax;
    for independent sigmoids it would soften the positives and leave the negatives near 0.
    """
    if multi:
        return label.astype(jnp.float32) * (1.0 - smoothing) + 0.5 * smoothing
    return optax.smooth_labels(jax.nn.one_hot(label, num_classes), smoothing)


def ema_rate(decay: float, step: jax.Array) -> jax.Array:
    """The averaging rate at `step`: `decay`, lowered early on so the first updates are not
    drowned by the initial weights (as in `tf.train.ExponentialMovingAverage(num_updates)`)."""
    return jnp.minimum(decay, (1.0 + step) / (10.0 + step))


def predict_step(state: TrainState, batch: dict, *, graphdef, config, mel, mesh
                 ) -> tuple[jax.Array, jax.Array]:
    """(clip logits [B, C], penultimate features [B, D]), float32: each the mean over the clip's
    crops, from the averaged weights (`ema_params`). The one forward pass of a trained
    classifier: evaluation, the judge, predict and the export all take it.

    batch["audio"]: PCM [B, num_crops, crop_samples], int16 (or float32 on the int16 scale).
    """
    b, n, length = batch["audio"].shape
    model = nnx.merge(graphdef, state.ema_params, state.ema_model_state)
    x = model_input(batch["audio"].reshape(b * n, length), input_kind(config), config, mel, mesh)
    logits, features = models.logits_and_features(model, x)
    return logits.reshape(b, n, -1).mean(axis=1), features.reshape(b, n, -1).mean(axis=1)


class ClassifierTask:
    """Genre classification as a `jaxgenre.tasks.Task`: the functions above, bound to a config.

    `predict(state, batch)` (clip logits, for `evaluation.ClassificationEvaluator`) is the
    model's use at evaluation time.
    """
    eval_items = ("ema", "progress")  # the checkpoint items evaluation reads

    @property
    def progress_metrics(self) -> tuple[str, ...]:
        return ("loss", train_hit_metric(self.config))

    @staticmethod
    def check_config(config: ml_collections.ConfigDict) -> None:
        models.get(config.model.name)  # raises, listing the registered models
        config_checks.check_choices({"optim.name": (config.optim.name, ("adamw", "sgd"))})
        d = config.distill
        if not (0.0 <= d.weight <= 1.0 and d.temperature > 0):
            raise ValueError(f"distill.weight {d.weight:g} must be in [0, 1] and "
                             f"distill.temperature {d.temperature:g} above 0.")

    def __init__(self, config: ml_collections.ConfigDict, data: spec.DataSpec, mesh,
                 training: bool = True):
        self.config, self.data, self.mesh = config, data, mesh
        # The teacher only trains: a run read back to evaluate or predict never needs it; at
        # weight 0 it would cost a forward pass per step and change nothing.
        d = config.distill
        if training and d.teacher_workdir and d.weight == 0:
            logging.warning("distill.weight is 0: the teacher %s is not loaded, the run learns "
                            "from the labels alone.", d.teacher_workdir)
        self.teacher = (Teacher(config, data, mesh)
                        if training and d.teacher_workdir and d.weight > 0 else None)
        self.tx = optim.make(config.optim, config.total_steps)
        self.graphdef, params, _ = abstract_model(config, data.num_classes)
        optim.check_freeze(config.optim, params)
        self.mel = mel_config(config, data.sample_rate)
        self.init_key, self.step_key = jax.random.split(jax.random.key(config.seed))
        self._lr = optim.schedule(config.optim, config.total_steps)

    def init(self) -> TrainState:
        return init_state(self.config, self.data.num_classes, self.tx, self.init_key)

    def warm_start(self, state: TrainState) -> TrainState:
        """A fresh state with `config.model.init_from`'s weights (see jaxgenre.pretrained.import_dir) in
        params, statistics and their averages, on the shardings it had; as is without."""
        source = self.config.model.init_from
        if not source:
            return state
        import_dir.check_config(self.config, self.data.sample_rate)
        params, rest, kept = import_dir.merge(jax.device_get(state.params),
                                              jax.device_get(state.model_state),
                                              import_dir.load(source), source)
        logging.info("Weights from %s; newly initialised: %s", source, ", ".join(kept) or "none")
        new = state.replace(params=params, model_state=rest, ema_params=params,
                            ema_model_state=rest)
        # Copied onto the shardings the fresh state had (XLA-owned buffers: the train step
        # donates them; arrays made from host views segfaulted under pytest-xdist here).
        return jax.device_put(new, jax.tree.map(lambda x: x.sharding, state))

    def step_inputs(self):
        return None if self.teacher is None else self.teacher.params

    def train_step(self, state: TrainState, batch: dict, teacher_params=None):
        return train_step(state, batch, teacher_params, graphdef=self.graphdef, tx=self.tx,
                          config=self.config, mel=self.mel, mesh=self.mesh, num_classes=self.data.num_classes,
                          base_key=self.step_key, teacher=self.teacher)

    def train_steps(self) -> tuple:
        return (self.train_step,)

    def predict(self, state: TrainState, batch: dict) -> tuple[jax.Array, jax.Array]:
        return predict_step(state, batch, graphdef=self.graphdef, config=self.config,
                            mel=self.mel, mesh=self.mesh)

    def learning_rates(self, step: int) -> dict[str, float]:
        rate = float(self._lr(step - 1))  # optax counts updates from 0
        scale = self.config.optim.encoder_lr_scale
        return {"learning_rate": rate, **({"encoder_learning_rate": rate * scale}
                                          if scale != 1.0 else {})}

    def num_params(self, state: TrainState) -> int:
        return sum(x.size for x in jax.tree.leaves(state.params))
