"""A genre classifier trained by `jaxgenre.train`, restored for use: the one path that predict,
export, the transfer judge and evaluator, the proxy evaluator and the GAN's frozen loss
classifier take.

  restore            the run's averaged (`ema`) weights, refusing any run but a classifier
  Judge              waveforms of any length -> clip probabilities and embeddings (jitted)
  Ensemble           several Judges of one dataset as one: mean probabilities, joined features
  judge_step         the pure function under `Judge` (the SavedModel export converts it)
  FrozenClassifier   fixed-reference log-mels -> logits, inside the GAN's loss
  FrozenEnsemble     several FrozenClassifiers as one (mean probabilities)
  frozen             a FrozenClassifier, or a FrozenEnsemble of 'RUN_A,RUN_B'
"""
import functools

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from jaxgenre.audio import frontend
from jaxgenre.core import errors, sharding
from jaxgenre.data import input_pipeline
from jaxgenre.run import rundir
from jaxgenre.tasks import classifier


class JudgeError(errors.UserError, ValueError):
    """The judge run cannot judge: the message names the problem and the fix."""


def restore(workdir: str, mesh: jax.sharding.Mesh, checkpoint: str = "best") -> rundir.Run:
    """The classifier run in `workdir` with its `ema` item restored on `mesh`; a
    `rundir.RunError` for any other task's run or an unreadable checkpoint."""
    return rundir.restore(workdir, mesh, classifier.ClassifierTask, checkpoint, items=("ema",),
                          expect_tasks=("classifier",))


class Judge:
    """Restores a classifier run's averaged weights (`best` checkpoint by default) on this
    process's devices.

    Attributes: class_names, sample_rate, crop_samples (the model's input length), dataset
    (the run's data.name), config, step.
    """

    def __init__(self, workdir: str, mesh: jax.sharding.Mesh, checkpoint: str = "best"):
        self.workdir = workdir
        try:
            run = restore(workdir, mesh, checkpoint)
        except rundir.RunError as e:
            raise JudgeError(str(e)) from None
        self.config, self.dataset, self.step = run.config, run.data.name, run.step
        self.class_names, self.sample_rate = list(run.data.class_names), run.data.sample_rate
        self.crop_samples, self.state = run.data.crop_samples, run.state
        data = self._data = sharding.batch_sharding(mesh)
        self._predict = jax.jit(
            functools.partial(judge_step, graphdef=run.task.graphdef, config=run.config,
                              mel=run.task.mel, mesh=mesh, crop=run.data.crop_samples),
            in_shardings=(run.state_sharding, data, data), out_shardings=(data, data))

    def compile(self, batch: int, length: int) -> None:
        """Compiles the step for audio [batch, length] without running it (jit keeps the
        executable for the calls that follow), so a caller can time the audio alone."""
        spec = jax.ShapeDtypeStruct
        self._predict.lower(self.state, spec((batch, length), jnp.float32, sharding=self._data),
                            spec((batch,), jnp.int32, sharding=self._data)).compile()

    def check_labels(self, class_names, what: str) -> None:
        """Refuses to judge data labelled differently from what the judge was trained on."""
        if list(class_names) != self.class_names:
            raise JudgeError(
                f"The judge {self.workdir} was trained on {self.dataset} with labels "
                f"{self.class_names}, but {what} has labels {list(class_names)}: train a judge on "
                f"the same dataset (jaxgenre.train --config.data.name=...) or pick another one.")

    def __call__(self, audio: jax.Array, num_samples: jax.Array) -> tuple[jax.Array, jax.Array]:
        """audio: float32 [B, N] in [-1, 1] at the judge's rate; num_samples: int32 [B], the real
        audio before any zero padding; both batch-sharded.

        Returns (probabilities [B, C] float32, penultimate features [B, D] float32), each the
        mean over crops that cover the real audio, as `jaxgenre.evaluate` averages logits.
        The probabilities are a softmax over genres, or for a multi-label run (data.label
        'genres') one sigmoid per genre.
        """
        return self._predict(self.state, audio, num_samples)


class Ensemble:
    """Judges of one dataset (labels and sample rate) heard as one: probabilities [B, C] the mean
    of the members', features [B, D1 + D2 + ...] theirs side by side. A stronger judge from
    models of different families than either alone; attributes as `Judge`'s, from the first
    member (config: its frontend makes the transfer baselines' codec), `workdir` the members'
    joined by commas and `step` a list."""

    def __init__(self, members: list):
        if not members:
            raise JudgeError("An ensemble judge needs at least one classifier run.")
        first = members[0]
        for other in members[1:]:
            other.check_labels(first.class_names, f"the ensemble's first judge {first.workdir}")
            if (other.dataset, other.sample_rate) != (first.dataset, first.sample_rate):
                raise JudgeError(
                    f"The judges {first.workdir} and {other.workdir} were trained on "
                    f"{first.dataset} at {first.sample_rate} Hz and {other.dataset} at "
                    f"{other.sample_rate} Hz: an ensemble's judges share one dataset.")
        self.members = list(members)
        self.workdir = ",".join(m.workdir for m in members)
        self.step = [m.step for m in members]  # a list: saved in JSON settings and compared
        self.config, self.dataset, self.class_names = first.config, first.dataset, first.class_names
        self.sample_rate, self.crop_samples = first.sample_rate, first.crop_samples

    def check_labels(self, class_names, what: str) -> None:
        self.members[0].check_labels(class_names, what)

    def compile(self, batch: int, length: int) -> None:
        for m in self.members:
            m.compile(batch, length)

    def __call__(self, audio: jax.Array, num_samples: jax.Array) -> tuple[jax.Array, jax.Array]:
        """As `Judge.__call__`: (probabilities [B, C], features [B, sum of the members' D])."""
        verdicts = [m(audio, num_samples) for m in self.members]
        probs = sum(p for p, _ in verdicts) / len(verdicts)
        return probs, jnp.concatenate([f for _, f in verdicts], axis=-1)


def split_workdirs(spec: str) -> list[str]:
    """'RUN_A,RUN_B' -> ['RUN_A', 'RUN_B']: the runs of a judge given as one string."""
    return [d for d in spec.split(",") if d]


def load(workdirs: str, mesh: jax.sharding.Mesh, checkpoint: str = "best") -> "Judge | Ensemble":
    """`Judge` of one classifier run, or `Ensemble` of several given as 'RUN_A,RUN_B'."""
    dirs = split_workdirs(workdirs)
    if len(dirs) == 1:
        return Judge(dirs[0], mesh, checkpoint)
    return Ensemble([Judge(d, mesh, checkpoint) for d in dirs])


def judge_step(state, audio, num_samples, *, graphdef, config, mel, mesh, crop):
    """Clip probabilities [B, C] and penultimate features [B, D] (float32) of audio float32
    [B, N] with real lengths num_samples int32 [B], as `Judge.__call__` documents. Pure; N must
    be static. mesh None traces it without sharding constraints (the SavedModel export)."""
    b, n = audio.shape
    pcm = jnp.pad(to_pcm(audio), ((0, 0), (0, max(crop - n, 0))))
    starts = crop_starts(num_samples, input_pipeline.num_eval_crops(n, crop), crop)
    crops = jax.vmap(lambda x, s: jax.vmap(lambda t: jax.lax.dynamic_slice(x, (t,), (crop,)))(s))(
        pcm, starts)
    logits, features = classifier.predict_step(state, {"audio": crops}, graphdef=graphdef,
                                               config=config, mel=mel, mesh=mesh)
    probs = jax.nn.sigmoid(logits) if classifier.multi_label(config) else jax.nn.softmax(logits)
    return probs, features


def to_pcm(audio):
    """What a listener's file holds: audio float32 [..., N] in [-1, 1] as int16 PCM values
    (clipped, rounded), float32 on the int16 scale, which the model's frontend expects."""
    return jnp.round(jnp.clip(audio, -1.0, 32767 / 32768) * 32768.0)


def crop_starts(num_samples, num_crops: int, crop: int, xp=jnp):
    """int32 [B, num_crops]: the first sample of each crop, evenly spaced over each clip's real
    audio (num_samples int [B]), as `input_pipeline.host_eval_dataset` places them. xp: jnp
    (traced, in `judge_step`) or np (on the host, without touching a device)."""
    last = xp.maximum(xp.asarray(num_samples) - crop, 0).astype(xp.float32)
    return xp.round(xp.linspace(0.0, 1.0, num_crops)[None, :] * last[:, None]).astype(xp.int32)


class FrozenClassifier:
    """A `jaxgenre.train` classifier's averaged weights, applied to fixed-reference log-mels.

    The classifier must use the same mel analysis (rate, n_fft, hop, bands, range) as the
    generator; its own input scaling is recomputed from the dB: its reference (each clip's
    maximum, or its own fixed power), then MFCC where it reads those.
    """

    def __init__(self, workdir: str, mesh, mel: frontend.MelConfig, class_names):
        run = restore(workdir, mesh, "best")
        theirs = run.task.mel
        fields = ("sample_rate", "n_fft", "hop_length", "n_mels", "fmin", "fmax", "top_db",
                  "compress", "log_gain")
        differ = [f for f in fields if getattr(theirs, f) != getattr(mel, f)]
        if differ:
            raise rundir.RunError(
                f"The classifier {workdir} analyses audio differently from this run: "
                + ", ".join(f"{f} {getattr(theirs, f)} vs {getattr(mel, f)}" for f in differ)
                + ". Train the classifier with this config's frontend.* values.")
        if classifier.multi_label(run.config):
            raise rundir.RunError(f"The classifier {workdir} is multi-label (data.label=genres): "
                                "its sigmoid genres are not the one target genre the loss and "
                                "the proxy score need. Use a single-label (genre_top) run.")
        if list(run.data.class_names) != list(class_names):
            raise rundir.RunError(f"The classifier {workdir} has labels {list(run.data.class_names)},"
                                f" this run {list(class_names)}: train it on the same dataset.")
        self.kind = classifier.input_kind(run.config)
        if self.kind == "waveform":
            raise rundir.RunError(f"The classifier {workdir} reads waveforms; a generator makes "
                                "log-mels: use a log_mel or mfcc classifier.")
        self.graphdef, self.top_db, self.config = run.task.graphdef, mel.top_db, run.config
        # dB relative to the generator's fixed power -> relative to the classifier's own
        self.compress, self.per_clip_ref = theirs.compress, theirs.ref is None
        self.ref_shift_db = 0.0 if self.per_clip_ref else 10.0 * float(
            np.log10(mel.ref / theirs.ref))
        self.params = {"params": run.state.ema_params, "rest": run.state.ema_model_state}

    def logits(self, params: dict, db: jax.Array, key: jax.Array | None = None) -> jax.Array:
        """db: fixed-reference log-mel [B, T, M] float32 -> logits [B, C] float32.

        With `key`, the input first goes through the classifier's own training augmentations
        (time stretch, frequency shift, SpecAugment masks), so that a generator is rewarded for
        what the classifier hears under them rather than for a perturbation of one exact input.
        """
        if self.compress == "db":  # log10(g x + 1) has no reference to move
            db = db - db.max(axis=(1, 2), keepdims=True) if self.per_clip_ref \
                else db + self.ref_shift_db
            db = jnp.maximum(db, db.max(axis=(1, 2), keepdims=True) - self.top_db)
        x = classifier.spectrogram_input(db, self.kind, self.config, key)
        model = nnx.merge(self.graphdef, params["params"], params["rest"])
        return model(x, train=False)


class FrozenEnsemble:
    """FrozenClassifiers of different families heard as one, as `Ensemble` hears Judges: a
    generator trained against several families must move what they share (the genre) rather
    than a perturbation one family alone falls for (Liu et al. 2017: adversarial examples made
    against an ensemble transfer to unseen models far more often; what it did on the dev set:
    docs/results_style_transfer.md). `params` is the members' params as a tuple; `logits` the
    log of the members' mean probabilities, so softmax, argmax and cross-entropy read it as one
    classifier's."""

    def __init__(self, members: list[FrozenClassifier]):
        self.members = list(members)
        self.params = tuple(m.params for m in self.members)

    def logits(self, params: tuple, db: jax.Array, key: jax.Array | None = None) -> jax.Array:
        """db: fixed-reference log-mel [B, T, M] float32 -> log mean probability [B, C] float32;
        with `key`, each member under its own draws of its own augmentations."""
        keys = [None] * len(self.members) if key is None else jax.random.split(key, len(self.members))
        log_probs = jnp.stack([jax.nn.log_softmax(m.logits(p, db, k))
                               for m, p, k in zip(self.members, params, keys)])
        return jax.nn.logsumexp(log_probs, axis=0) - np.log(len(self.members))


def frozen(workdirs: str, mesh, mel: frontend.MelConfig, class_names
           ) -> "FrozenClassifier | FrozenEnsemble":
    """`FrozenClassifier` of one classifier run, or `FrozenEnsemble` of several given as
    'RUN_A,RUN_B' (as `load` reads a judge)."""
    members = [FrozenClassifier(d, mesh, mel, class_names) for d in split_workdirs(workdirs)]
    return members[0] if len(members) == 1 else FrozenEnsemble(members)
