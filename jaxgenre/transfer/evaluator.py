"""Judges transfer methods on one split, every clip to every other genre, the same way for all.

For each evaluated clip and each target genre other than its own, a method's output is
re-analysed from its waveform by a separately trained genre classifier (the judge):
  target_accuracy / target_probability: how often / how surely the judge hears the target;
  ceiling_accuracy: the judge's accuracy on the real clips through the identity codec (the most
    a method can reach through this vocoder); ceiling_balanced_accuracy: its mean over genres,
    the figure to hold random_target against (its targets are spread evenly over genres);
  chroma_similarity, onset_f1, logmel_distance: what is kept of the input (`metrics`);
  fd_judge: Frechet distance of the judge's features of the outputs aimed at a genre to those
    of real clips of that genre, at equal sample sizes; the mean over target genres.
"""
import collections
import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
from jax.experimental import multihost_utils
from jax.sharding import PartitionSpec as P
from tqdm import tqdm

from jaxgenre.core import sharding
from jaxgenre.data import input_pipeline
from jaxgenre.inference import judge as judge_lib
from jaxgenre.transfer import methods as methods_lib
from jaxgenre.transfer import metrics


@dataclasses.dataclass
class Example:
    """A clip whose input and outputs are written for people to hear and see."""
    track_id: int
    source: int
    target: int
    input: np.ndarray  # float32 [N]
    output: np.ndarray  # float32 [N]
    probabilities: np.ndarray | None = None  # float32 [C]: the judge's verdict on the output


def example_target(source: int, targets: list[int], num_classes: int) -> int | None:
    """The genre an example clip of `source` is heard converted to: the next of the evaluated
    `targets` after it (None when `source` is the only one)."""
    return next((t for t in ((source + k) % num_classes for k in range(1, num_classes))
                 if t in targets), None)


def example_rows(source: np.ndarray, target: np.ndarray, track_id: np.ndarray, offset: int,
                 targets: list[int], num_classes: int, wanted: int, taken: set[int],
                 pairs: dict[int, int] | None = None) -> list[tuple[int, int, int]]:
    """Which rows of a batch to keep for listening: up to `wanted` (row, source, target), each
    clip converted to its `example_target`, tracks in `taken` skipped. `pairs` ({track id:
    target}, the example clips chosen once for every method: the split's first clips that
    have a target) limits the rows to those clips; without it (the first, target-free run
    that chooses them) every clip with a target qualifies. Rows of a pass converting to
    another genre (offset > 0) are kept only where that is the clip's example target.
    source, target, track_id: int [n], the batch's real rows."""
    chosen, taken = [], set(taken)
    for j, (s, t, track) in enumerate(zip(source.tolist(), target.tolist(), track_id.tolist())):
        shown = example_target(s, targets, num_classes) if pairs is None else pairs.get(track)
        if (len(chosen) < wanted and shown is not None and track not in taken
                and (offset == 0 or t == shown)):
            chosen.append((j, s, shown))
            taken.add(track)
    return chosen


class TransferEvaluator:
    """Evaluates methods on `split` of the judge's dataset (or `split[:clips]`).

    Args:
      judge: the genre judge (never a classifier any method was trained with).
      builder: the dataset (its labels must be the judge's).
      codec: the identity codec that measures the ceiling.
      clip_samples: the length N every clip is cut or padded to (`input_pipeline.longest_clip`).
      reference: {label: {"audio": int16 [n, N], "num_samples": int32 [n]}} real clips per genre:
        FD-judge's reference sets (keep them apart from what random_target draws from).
      clips: evaluate only the split's first `clips` clips.
      targets: target labels to evaluate (all by default).
      num_examples: clips whose audio `run` returns for listening, each converted to one of
        `targets`.
    """

    def __init__(self, judge: judge_lib.Judge, builder, split: str, batch_size: int, mesh,
                 codec: methods_lib.Codec, clip_samples: int, reference: dict,
                 clips: int | None = None, targets: list[int] | None = None,
                 num_examples: int = 3):
        judge.check_labels(builder.info.features["label"].names, f"dataset {builder.info.full_name}")
        self.judge, self.builder, self.mesh, self.batch_size = judge, builder, mesh, batch_size
        self.num_classes = builder.info.features["label"].num_classes
        self.split = split if clips is None else f"{split}[:{clips}]"
        self.targets = list(range(self.num_classes)) if targets is None else sorted(targets)
        self.num_examples, self.clip_samples = num_examples, clip_samples
        self.content = metrics.content_fn(codec.mel, mesh)
        self.codec, self.identity = codec, methods_lib.Identity(codec)
        self.reference = {c: self._features(p["audio"], p["num_samples"])
                          for c, p in reference.items()}
        self._identity = None  # (records, examples) of the identity codec, computed once
        self._example_pairs = None  # {track id: target} of the example clips, from that run
        self._input_onsets = {}  # track_id -> onset times [K] of the input clip

    def _features(self, clips: np.ndarray, num_samples: np.ndarray) -> np.ndarray:
        """Judge features [n, D] of int16 clips [n, N] with real lengths [n], in padded global
        batches (every process holds the same clips)."""
        audio = sharding.pad_rows(clips.astype(np.float32) / 32768.0, self.batch_size)
        lengths = sharding.pad_rows(num_samples.astype(np.int32), self.batch_size)
        out = []
        for i in range(0, len(audio), self.batch_size):
            batch = [sharding.from_host(x[i:i + self.batch_size], self.mesh)
                     for x in (audio, lengths)]
            out.append(multihost_utils.process_allgather(self.judge(*batch)[1], tiled=True))
        return np.concatenate(out)[:len(clips)]

    def _num_batches(self) -> int:
        shard = input_pipeline.host_shard(self.builder, self.split, 0, jax.process_count())
        return -(-shard.max_num_examples // input_pipeline.host_batch_size(self.batch_size))

    def _convert(self, method, passes, progress) -> tuple[list[dict], list[Example]]:
        """Runs `method` over the split once per target offset (0: target-free methods).

        Returns per-pair records on host, and the audio of `num_examples` clips converted to
        one of the evaluated targets (`_examples`), for listening.
        """
        records, examples = [], []
        for offset in passes:
            for batch in input_pipeline.clip_batches(self.builder, self.split, self.batch_size,
                                                     self.mesh, self.clip_samples):
                source = batch["label"]
                target = (source + offset) % self.num_classes
                audio = methods_lib.to_float(batch["audio"])
                output = method(audio, source, target)
                if not bool(jnp.isfinite(output).all()):
                    raise ValueError(f"The method {method.name} returned audio that is not finite "
                                     f"(NaN or inf) for a clip of {self.split}: a transfer method "
                                     "must return float32 audio in [-1, 1].")
                probs, features = self.judge(output, batch["num_samples"])
                chroma, logmel, steady = self.content(audio, output, batch["num_samples"])
                host = multihost_utils.process_allgather(
                    {"source": source, "target": target, "mask": batch["mask"],
                     "track_id": batch["track_id"], "probs": probs, "features": features,
                     "chroma": chroma, "logmel": logmel, "steady_tone": steady,
                     **self._host_figures(audio, output, batch["track_id"],
                                          batch["num_samples"])},
                    tiled=True)
                keep = np.flatnonzero(host.pop("mask"))
                records += [{k: v[i] for k, v in host.items()} for i in keep]
                examples += self._examples(host, keep, offset, audio, output,
                                           self.num_examples - len(examples),
                                           {e.track_id for e in examples})
                progress.update(1)
        return records, examples

    def _examples(self, host, keep, offset, audio, output, wanted, taken) -> list[Example]:
        """The `example_rows` of this batch with their audio (gathered only when one is kept;
        every process decides alike, from gathered `host` data)."""
        chosen = example_rows(host["source"][keep], host["target"][keep],
                              host["track_id"][keep], offset, self.targets, self.num_classes,
                              wanted, taken, self._example_pairs)
        if not chosen:
            return []
        pcm = multihost_utils.process_allgather((audio, output), tiled=True)
        return [Example(int(host["track_id"][keep[j]]), source, target, pcm[0][keep[j]],
                        pcm[1][keep[j]], host["probs"][keep[j]]) for j, source, target in chosen]

    def _host_figures(self, audio, output, track_id, num_samples) -> dict[str, jax.Array]:
        """Figures computed on host for this process's rows, back as batch-sharded [B] arrays:
        onset F1 (the inputs' onsets detected once per clip, however many targets it is
        converted to), the output's clipped fraction and edge burst (metrics)."""
        spec = P(sharding.DATA_AXIS)
        audio, output, track_id, num_samples = (
            np.asarray(multihost_utils.global_array_to_host_local_array(x, self.mesh, spec))
            for x in (audio, output, track_id, num_samples))
        rate = self.builder.info.features["audio"].sample_rate
        figures = {"onset": [], "clipped": [], "edge_burst": []}
        for a, o, t, n in zip(audio, output, track_id, num_samples):
            if int(t) not in self._input_onsets:
                self._input_onsets[int(t)] = metrics.onsets(a, rate)
            figures["onset"].append(metrics.onset_f1(self._input_onsets[int(t)],
                                                     metrics.onsets(o, rate)))
            figures["clipped"].append(metrics.clipped_fraction(o, int(n)))
            figures["edge_burst"].append(metrics.edge_burst_db(o, int(n), rate))
        return {k: multihost_utils.host_local_array_to_global_array(
            np.array(v, np.float32), self.mesh, spec) for k, v in figures.items()}

    def _progress(self, passes: int, desc: str):
        return tqdm(total=self._num_batches() * passes, desc=desc, disable=jax.process_index() > 0)

    def ceiling(self) -> dict:
        """The judge's accuracy and balanced accuracy on the real clips through the identity
        codec."""
        if self._identity is None:
            with self._progress(1, "ceiling (identity codec)") as progress:
                self._identity = self._convert(self.identity, [0], progress)
            # every method's examples: the clips and targets the identity run chose
            self._example_pairs = {e.track_id: e.target for e in self._identity[1]}
        source = np.array([int(r["source"]) for r in self._identity[0]])
        hit = np.array([r["probs"].argmax() == r["source"] for r in self._identity[0]])
        return {"ceiling_accuracy": float(hit.mean()), "ceiling_balanced_accuracy": float(
            np.mean([hit[source == c].mean() for c in np.unique(source)]))}

    def run(self, method: methods_lib.TransferMethod) -> tuple[dict, list[Example]]:
        """Every figure of `method`, overall and per source -> target pair, and the examples."""
        ceiling = self.ceiling()
        if method.uses_target:
            offsets = list(range(1, self.num_classes))
            with self._progress(len(offsets), method.name) as progress:
                records, examples = self._convert(method, offsets, progress)
        else:  # one output per clip, judged against every other genre
            if isinstance(method, methods_lib.Identity) and method.codec is self.codec:
                clip_records, examples = self._identity  # the ceiling's run is this output
            else:
                with self._progress(1, method.name) as progress:
                    clip_records, examples = self._convert(method, [0], progress)
            records = [dict(r, target=np.int32(t)) for r in clip_records
                       for t in range(self.num_classes) if t != r["source"]]
        records = [r for r in records if int(r["target"]) in self.targets]
        return self._summarise(records, ceiling), examples

    def _summarise(self, records: list[dict], ceiling: dict) -> dict:
        names = self.builder.info.features["label"].names
        source = np.array([int(r["source"]) for r in records])
        target = np.array([int(r["target"]) for r in records])
        probs = np.stack([r["probs"] for r in records])
        hit = probs.argmax(-1) == target
        p_target = probs[np.arange(len(records)), target]
        content = {k: np.array([float(r[k]) for r in records])
                   for k in ("chroma", "onset", "logmel", "clipped", "edge_burst", "steady_tone")}
        features = np.stack([r["features"] for r in records])
        track_id = np.array([int(r["track_id"]) for r in records])
        fd, per_target_fd = self._fd(features, target, track_id)
        per_pair = collections.OrderedDict()
        for s in range(self.num_classes):
            for t in range(self.num_classes):
                sel = (source == s) & (target == t)
                if sel.any():
                    per_pair[f"{names[s]}->{names[t]}"] = {
                        "source": names[s], "target": names[t], "num_pairs": int(sel.sum()),
                        "target_accuracy": float(hit[sel].mean()),
                        "target_probability": float(p_target[sel].mean()),
                        "chroma_similarity": float(content["chroma"][sel].mean()),
                        "onset_f1": float(content["onset"][sel].mean()),
                        "logmel_distance": float(content["logmel"][sel].mean())}
        return {
            "target_accuracy": float(hit.mean()),
            "target_accuracy_se": metrics.clip_standard_error(hit.astype(np.float64), track_id),
            "target_probability": float(p_target.mean()),
            **ceiling,
            "chance": 1.0 / self.num_classes,
            "chroma_similarity": float(content["chroma"].mean()),
            "onset_f1": float(content["onset"].mean()),
            "chroma_similarity_se": metrics.clip_standard_error(content["chroma"], track_id),
            "onset_f1_se": metrics.clip_standard_error(content["onset"], track_id),
            "logmel_distance": float(content["logmel"].mean()),
            "clipped_sample_rate": float(content["clipped"].mean()),
            "edge_burst_db": float(content["edge_burst"].mean()),
            "edge_burst_db_se": metrics.clip_standard_error(content["edge_burst"], track_id),
            "edge_burst_db_max": float(content["edge_burst"].max()),
            "steady_tone_db": float(content["steady_tone"].mean()),
            "fd_judge": fd,
            "fd_judge_per_target": per_target_fd,
            "num_pairs": len(records),
            "num_clips": len(set(track_id.tolist())),
            "genres": list(names),
            "per_pair": per_pair,
        }

    def _fd(self, features: np.ndarray, target: np.ndarray, track_id: np.ndarray
            ) -> tuple[float | None, dict]:
        """FD-judge per target genre, and their mean.

        For target genre t: n = min(n_outputs, n_real) outputs aimed at t, against n real clips
        of t. The outputs are picked by a fixed hash of their track ids, so every method is
        measured on the same clips, with their source genres mixed. (Pooled over targets the
        comparison would be blind: outputs of all sources against clips of all genres.)
        """
        names = self.builder.info.features["label"].names
        per_target = {}
        for t in sorted(set(target.tolist())):
            rows = np.flatnonzero(target == t)
            rows = rows[np.argsort((track_id[rows].astype(np.uint64) * 2654435761) % (1 << 32),
                                   kind="stable")]
            n = min(len(rows), len(self.reference[t]))
            if n > 1:
                per_target[names[t]] = {"fd": metrics.frechet_distance(features[rows[:n]],
                                                                       self.reference[t][:n]),
                                        "n": n}
        mean = float(np.mean([v["fd"] for v in per_target.values()])) if per_target else None
        return mean, per_target
