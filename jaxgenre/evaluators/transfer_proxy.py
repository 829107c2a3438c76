"""Judge-free style-transfer scores during training (config.evals type 'transfer_proxy').

The first `clips` clips of a split (their first crop_seconds), each turned into every other
genre by the averaged generator, scored in the log-mel domain (no vocoder, so it is cheap):
  target_accuracy / target_probability: a frozen genre classifier hears the target in the
    converted log-mel (evals.<name>.classifier_workdir, default gan.classifier_workdir; pick a
    classifier other than the loss's one for an unbiased score);
  source_accuracy: that classifier on the unconverted clips (its ceiling on these clips);
  change_db: mean |converted - input| in dB; identity_db: the same for conversion to the
    clip's own genre (0 for a generator that leaves its own genre alone);
  chroma_kept: the chroma similarity the vocoded conversions would keep, estimated from the
    input's spectrum and the edit (`gan_losses.chroma_kept`; the evaluator measures it);
  target_accuracy_se / chroma_kept_se: their standard errors by clip (a clip's conversions
    to the other genres are not independent), so two checkpoints or runs are compared against
    the proxy's own noise (NaN for fewer than two clips).
The honest, judged and vocoded figures come from `jaxgenre.evaluate_transfer`; these pick the
best checkpoint (config.best_metric, e.g. 'val_target_accuracy') and feed TensorBoard, with
spectrogram images and audio of `num_samples` clips converted to every genre.
"""
import json

import jax
import jax.numpy as jnp
import numpy as np
from absl import logging
from etils import epath
from jax.experimental import multihost_utils

from jaxgenre import tasks
from jaxgenre.audio import vocoder
from jaxgenre.core import outputs, sharding
from jaxgenre.data import input_pipeline
from jaxgenre.inference import judge
from jaxgenre.run import rundir
from jaxgenre.tasks import gan_losses
from jaxgenre.transfer import methods, metrics

# The headline numbers, logged as `<evals name>_<scalar>` (e.g. val_target_accuracy).
SCALARS = ("target_accuracy", "target_probability", "source_accuracy", "change_db",
           "identity_db", "chroma_kept", "target_accuracy_se", "chroma_kept_se")


class ProxyEvaluator:
    def __init__(self, task: tasks.StyleTransfer, state_sharding, builder, split: str,
                 batch_size: int, mesh, clips: int | None = None,
                 classifier_workdir: str | None = None, num_samples: int = 2):
        workdir = classifier_workdir or task.gan.classifier_workdir
        if not workdir:
            raise rundir.RunError("The transfer_proxy evaluator needs a genre classifier: set "
                                "gan.classifier_workdir or evals.<name>.classifier_workdir to "
                                "a jaxgenre.train classifier run with this config's frontend.")
        if not classifier_workdir:
            logging.warning(
                "The transfer_proxy evaluator scores with gan.classifier_workdir, the classifier "
                "in the generator's loss: the checkpoint it picks is the one that pleases that "
                "network most. Set evals.<name>.classifier_workdir to another classifier run "
                "(not the judge you will evaluate with) for an unbiased choice.")
        self.classifier = judge.frozen(workdir, mesh, task.mel, task.data.class_names)
        self.task, self.builder, self.mesh, self.batch_size = task, builder, mesh, batch_size
        self.split = split if clips is None else f"{split}[:{clips}]"
        self.num_samples, self.names = num_samples, list(task.data.class_names)
        data, replicated = sharding.batch_sharding(mesh), sharding.replicated(mesh)
        params_sharding = jax.tree.map(lambda _: replicated, self.classifier.params)
        self._scores = jax.jit(self._scores_fn, in_shardings=(
            state_sharding, params_sharding, data, data), out_shardings=data)
        self._convert = jax.jit(self._convert_fn, in_shardings=(state_sharding, data, data),
                                out_shardings=(data, data))
        self.codec = methods.Codec(task.mel, vocoder.VocoderConfig(), mesh)
        self._samples = None  # (images, audio) of the last run, for `summarise`

    def _scores_fn(self, state, params, audio, label):
        """Per clip [B, ...]: target correct / probability / change / chroma kept per other
        genre [B, C-1], and source correct and identity distance [B]."""
        task, num_classes = self.task, self.task.data.num_classes
        power = task.power(audio)
        x = task.from_power(power)

        offsets = jnp.arange(1, num_classes)

        def to_genre(offset):
            y = task.convert(state, x, (label + offset) % num_classes)
            y_db = task.to_db(y)
            chroma = gan_losses.chroma_kept(power, y_db - task.to_db(x), task.mel)
            return y_db, _mean_abs_db(task, y, x), chroma

        y_db, change, chroma = jax.lax.map(to_genre, offsets)  # [C-1, B, ...]
        # The classifier hears all C-1 conversions as one batch, outside the map: a recurrent
        # one (the CRNN's nnx.RNN, a scan) refuses to run in a map's body on weights traced
        # outside it.
        probs = jax.nn.softmax(self.classifier.logits(params, y_db.reshape(-1, *y_db.shape[2:])))
        probs = probs.reshape(num_classes - 1, -1, num_classes)  # [C-1, B, C]
        targets = (label[None] + offsets[:, None]) % num_classes  # [C-1, B]
        prob = jnp.take_along_axis(probs, targets[..., None], -1)[..., 0]
        correct = jnp.argmax(probs, -1) == targets
        source_logits = self.classifier.logits(params, task.to_db(x))
        identity = _mean_abs_db(task, task.convert(state, x, label), x)
        return {"correct": correct.T, "prob": prob.T, "change": change.T, "chroma": chroma.T,
                "source_correct": jnp.argmax(source_logits, -1) == label, "identity": identity}

    def _convert_fn(self, state, audio, target):
        x = self.task.spectrogram(audio)
        return self.task.to_db(x), self.task.to_db(self.task.convert(state, x, target))

    def run(self, state) -> dict:
        rows, first = [], None
        for batch in input_pipeline.clip_batches(self.builder, self.split, self.batch_size,
                                                 self.mesh, self.task.data.crop_samples):
            out = self._scores(state, self.classifier.params, batch["audio"], batch["label"])
            host = multihost_utils.process_allgather(
                {**out, "mask": batch["mask"], "audio": batch["audio"], "label": batch["label"]},
                tiled=True)
            keep = host.pop("mask")
            if first is None:
                first = {k: host[k][keep][:self.num_samples] for k in ("audio", "label")}
            rows.append({k: v[keep] for k, v in host.items() if k not in ("audio", "label")})
        r = {k: np.concatenate([row[k] for row in rows]) for k in rows[0]}
        self._samples = self._sample(state, first) if self.num_samples else None
        clip_ids = np.repeat(np.arange(len(r["identity"])), r["correct"].shape[1])

        def by_clip_se(values):  # values [clips, C - 1]
            se = metrics.clip_standard_error(values.ravel(), clip_ids)
            return float("nan") if se is None else se
        return {"target_accuracy": float(r["correct"].mean()),
                "target_accuracy_se": by_clip_se(r["correct"]),
                "chroma_kept_se": by_clip_se(r["chroma"]),
                "target_probability": float(r["prob"].mean()),
                "source_accuracy": float(r["source_correct"].mean()),
                "change_db": float(r["change"].mean()), "identity_db": float(r["identity"].mean()),
                "chroma_kept": float(r["chroma"].mean()),
                "num_clips": len(r["identity"]), "num_pairs": int(r["correct"].size)}

    def _sample(self, state, first: dict):
        """The first clips turned into every genre: (images {name: uint8 [1, H, W, 3]},
        audio {name: float32 [C, N, 1]}, every genre in label order)."""
        num_classes = len(self.names)
        audio = np.repeat(first["audio"], num_classes, axis=0)
        target = np.tile(np.arange(num_classes, dtype=np.int32), len(first["audio"]))
        audio_g, target_g = (sharding.from_host(sharding.pad_rows(a, jax.device_count()), self.mesh)
                             for a in (audio, target))
        db_in, db_out = self._convert(state, audio_g, target_g)
        wave = self.codec.synthesise(db_out, methods.to_float(audio_g))
        db_in, db_out, wave = (np.asarray(multihost_utils.process_allgather(a, tiled=True))
                               for a in (db_in, db_out, wave))
        images, sounds = {}, {}
        for i in range(len(first["audio"])):
            rows = slice(i * num_classes, (i + 1) * num_classes)
            source = self.names[int(first["label"][i])]
            images[f"clip{i}_{source}"] = _spectrogram_strip(db_in[rows][0], db_out[rows])
            sounds[f"clip{i}_{source}"] = wave[rows][..., None]
        return images, sounds

    @staticmethod
    def scalars(result: dict) -> dict[str, float]:
        return {k: result[k] for k in SCALARS}

    def summarise(self, writer, step: int, result: dict) -> None:
        """Spectrogram strips (input, then every genre in label order) and audio per clip."""
        if self._samples is None or jax.process_index() > 0:
            return
        images, sounds = self._samples
        writer.write_images(step, images)
        writer.write_audios(step, sounds, sample_rate=self.task.data.sample_rate)

    def table(self, result: dict) -> str:
        return "\n".join(f"{k}: {v:.4f}" for k, v in self.scalars(result).items()) + \
            f"\nclips: {result['num_clips']}, pairs: {result['num_pairs']}, step: {result['step']}"

    def write(self, result: dict, out_dir: str) -> list[str]:
        """`transfer_proxy_<split>_<step>.json`."""
        path = (epath.Path(out_dir)
                / f"transfer_proxy_{self.split.split('[')[0]}_{result['step']}.json")
        outputs.write_text(path, json.dumps(result, indent=2))
        return [str(path)]


def _mean_abs_db(task, y: jax.Array, x: jax.Array) -> jax.Array:
    """Mean |y - x| in dB per example [B]."""
    return jnp.abs(task.to_db(y) - task.to_db(x)).mean(axis=(1, 2))


def _spectrogram_strip(db_in: np.ndarray, db_outs: np.ndarray) -> np.ndarray:
    """[T, M] input and [C, T, M] outputs -> uint8 [1, M, (C + 1) * T, 3], low bands at the
    bottom, one colour scale for all."""
    from matplotlib import colormaps
    panels = np.concatenate([db_in[None], db_outs])  # [C + 1, T, M]
    top = panels.max()
    scaled = np.clip((panels - (top - 80.0)) / 80.0, 0.0, 1.0)
    strip = np.concatenate([p.T[::-1] for p in scaled], axis=1)  # [M, (C + 1) * T]
    return (colormaps["magma"](strip)[None, ..., :3] * 255).astype(np.uint8)
