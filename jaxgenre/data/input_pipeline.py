"""From a built TFDS dataset to global `jax.Array` batches sharded over the mesh.

Each process reads its own contiguous shard of a split (`tfds.even_splits`), so hosts never
read the same example. Training streams random crops; its order is a pure function of
(seed, epoch), so a resumed run at step s continues the exact stream of an uninterrupted one.
Evaluation yields every example exactly once across processes, as fixed crops covering each
clip, padded with masked examples to equal batch counts on every process.

`label` (config.data.label) chooses the target: 'genre_top', the single `label` feature, a class
index; or 'genres', the multi-hot over the same class names of the top-level genres of the
track's FMA genres (`top_level_classes`). Examples without one (label -1: fma/large tracks
without a top genre; no genre of the classes) are left out of training and masked out of
evaluation.

Host batches (numpy); the label is int32 [B_host] ('genre_top') or int32 [B_host, C] 0/1
('genres'):
  train: audio int16 [B_host, crop_samples], label
  eval:  audio int16 [B_host, num_crops, crop_samples], label, mask bool [B_host] (False on
         padding and examples without a label), track_id int32 [B_host]
"""
import collections
import dataclasses
import math
from collections.abc import Iterator

import jax
import numpy as np
import tensorflow as tf
import tensorflow_datasets as tfds
from absl import logging
from jax.experimental import multihost_utils

import tfds_fma  # registers the `fma` dataset with TFDS
from jaxgenre.core import errors, sharding

_MAX_EPOCHS = 1 << 20
LABELS = ("genre_top", "genres")  # the values of config.data.label


class DatasetUnavailableError(errors.UserError, RuntimeError):
    """The dataset is neither built nor buildable; the message says how to fix it."""


def unknown_dataset(name: str, error: Exception, flag: str) -> str:
    """The message for a dataset name TFDS does not know (set by `flag`), listing ours."""
    return (f"Unknown dataset {name!r} ({flag}): {str(error).splitlines()[0]}\nFMA configs: "
            f"{', '.join('fma/' + c.name for c in tfds_fma.Builder.BUILDER_CONFIGS)}.")


def load_builder(name: str, data_dir: str | None, manual_dir: str | None = None,
                 build: bool = True, flag: str = "data.name") -> tfds.core.DatasetBuilder:
    """The TFDS builder for `name`, built on first use (by process 0) if it is not yet built.

    build=False: a tool that only reads refuses a dataset not built yet, with the command that
    builds it. flag: where the user set `name`, for the error.
    """
    try:
        builder = tfds.builder(name, data_dir=data_dir)
    except (tfds.core.registered.DatasetNotFoundError, ValueError) as e:
        raise DatasetUnavailableError(unknown_dataset(name, e, flag)) from e
    if builder.is_prepared():
        return builder
    if not build:
        config = builder.builder_config
        manual = "" if config.synthetic else " --manual_dir FMA_DIR"
        raise DatasetUnavailableError(
            f"{name} is not built in {data_dir}; build it with:\n"
            f"  python -m tfds_fma.build --config {config.name}{manual} --data_dir {data_dir}")
    if jax.process_index() == 0:
        try:
            builder.download_and_prepare(
                download_config=tfds.download.DownloadConfig(manual_dir=manual_dir))
        except (FileNotFoundError, AssertionError) as e:
            raise DatasetUnavailableError(
                f"Dataset {name} is not built in data.data_dir={data_dir} and cannot be built "
                f"from data.manual_dir={manual_dir}:\n{e}") from e
    if jax.process_count() > 1:
        multihost_utils.sync_global_devices(f"built {name}")
    return tfds.builder(name, data_dir=data_dir)


@dataclasses.dataclass(frozen=True)
class HostShard:
    """What this process reads of a split, and how many batches every process gets."""
    file_instructions: tuple
    num_examples: int
    min_num_examples: int  # over all processes
    max_num_examples: int


def host_shard(builder, split: str, process_index: int, process_count: int) -> HostShard:
    parts = tfds.even_splits(split, n=process_count)
    counts = [builder.info.splits[p].num_examples for p in parts]
    mine = builder.info.splits[parts[process_index]]
    return HostShard(tuple(mine.file_instructions), mine.num_examples, min(counts), max(counts))


def top_level_classes(builder) -> dict[int, int]:
    """{FMA genre id: class index of its top-level genre} for the `genres` feature.

    The classes are the `label` feature's names, FMA's top-level genres (8 in fma_small, all 16
    in medium and large), so a multi-label model has the head, the names and the per-genre
    scores of a single-label one. The builder stores each track's `genres_all` (every genre of
    the 163 and their ancestors); each maps to its root in the hierarchy the builder records
    (`info.metadata['genres']`). Roots outside the classes (fma_small leaves out 8) map nowhere:
    the vocabulary is the one the single-label model predicts, and the 163 sub-genres would be
    a different task with most of them absent from a split.
    """
    hierarchy = (builder.info.metadata or {}).get("genres")
    if not hierarchy:
        raise DatasetUnavailableError(
            f"{builder.info.full_name} records no genre hierarchy (info.metadata['genres']), "
            "which data.label='genres' needs: rebuild it with this tfds_fma, or use "
            "data.label='genre_top'.")
    names = list(builder.info.features["label"].names)
    title = {int(g["id"]): g["title"] for g in hierarchy}
    return {int(g["id"]): names.index(title[int(g["top_level"])]) for g in hierarchy
            if title.get(int(g["top_level"])) in names}


def _labeler(builder, label: str):
    """(fn, shape): fn(decoded example) -> (target int32 of `shape`, whether it has one).

    'genre_top': the class index [], present unless -1. 'genres': the multi-hot [C] of
    `top_level_classes`, present when any class is set.
    """
    if label == "genre_top":
        return (lambda ex: (tf.cast(ex["label"], tf.int32), ex["label"] >= 0)), []
    if label != "genres":
        raise ValueError(f"Unknown data.label {label!r}; valid: {', '.join(LABELS)}.")
    classes = top_level_classes(builder)
    table = tf.lookup.StaticHashTable(tf.lookup.KeyValueTensorInitializer(
        tf.constant(list(classes), tf.int64), tf.constant(list(classes.values()), tf.int32)),
        default_value=-1)  # genre ids outside the hierarchy or the classes: no class
    num_classes = builder.info.features["label"].num_classes

    def multi_hot(ex):
        index = table.lookup(tf.cast(ex["genres"], tf.int64))
        # one_hot(-1) is all zeros; sum, not max, so a track without genres gives zeros
        hot = tf.minimum(tf.reduce_sum(tf.one_hot(index, num_classes, dtype=tf.int32), 0), 1)
        return hot, tf.reduce_any(hot > 0)

    return multi_hot, [num_classes]


def _records(instructions) -> tuple[tf.Tensor, tf.Tensor, tf.Tensor]:
    return (tf.constant([fi.filename for fi in instructions]),
            tf.constant([fi.skip for fi in instructions], tf.int64),
            tf.constant([fi.take for fi in instructions], tf.int64))


def crop_seed(seed: int, epoch, index, process_index: int, process_count: int) -> tf.Tensor:
    """The stateless seed [2] int64 of the crop at `index` of `epoch` on one process: distinct
    per process (hosts at the same position draw different offsets); with one process, the
    seed [seed * _MAX_EPOCHS + epoch, index] of runs made before multi-host offsets."""
    index = tf.cast(index, tf.int64)
    return tf.stack([tf.cast(seed, tf.int64) * _MAX_EPOCHS + tf.cast(epoch, tf.int64),
                     index * process_count + process_index])


def host_train_dataset(builder, split: str, host_batch: int, crop_samples: int, seed: int,
                       start_step: int = 0, process_index: int = 0, process_count: int = 1,
                       shuffle_buffer: int = 1024, label: str = "genre_top") -> tf.data.Dataset:
    """Endless random-crop batches for one process, starting at `start_step`.

    Epoch e reads this process's files in an order drawn from (seed, e), shuffles examples with
    a buffer seeded by (seed, e), drops examples without a `label` target and keeps the first
    `per_epoch * host_batch` (per_epoch: full batches of the smallest process's shard). Crop
    offsets are drawn from (seed, e, position in epoch, process). Nothing depends on what was
    read before, so starting at step s skips unread records only, no decoding.
    """
    shard = host_shard(builder, split, process_index, process_count)
    per_epoch = shard.min_num_examples // host_batch
    if per_epoch == 0:
        raise ValueError(f"Split {split!r} has {shard.min_num_examples} examples per process, "
                         f"fewer than one host batch of {host_batch}: lower batch_size.")
    start_epoch, offset = divmod(start_step, per_epoch)
    files, skips, takes = _records(shard.file_instructions)
    features = builder.info.features
    target, _ = _labeler(builder, label)

    def read_file(i):
        return tf.data.TFRecordDataset(files[i]).skip(skips[i]).take(takes[i])

    def crop(index, ex, epoch):
        max_start = tf.maximum(tf.cast(ex["num_samples"], tf.int64) - crop_samples, 0)
        start = tf.random.stateless_uniform(
            [], seed=crop_seed(seed, epoch, index, process_index, process_count),
            maxval=max_start + 1, dtype=tf.int64)
        return {"audio": ex["audio"][start:start + crop_samples], "label": target(ex)[0]}

    def epoch_dataset(epoch):
        epoch_seed = tf.stack([tf.cast(seed, tf.int64), epoch])
        order = tf.random.experimental.stateless_shuffle(tf.range(tf.size(files)), seed=epoch_seed)
        ds = tf.data.Dataset.from_tensor_slices(order).interleave(
            read_file, cycle_length=4, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
        ds = ds.shuffle(shuffle_buffer, seed=seed * _MAX_EPOCHS + epoch)
        # Tracks without a target (no top genre: label -1 in fma/large; or no genre of the
        # classes) teach nothing. The repeat refills what they leave out, so every process
        # still yields `per_epoch` batches; with every example labelled it changes nothing.
        ds = ds.map(features.deserialize_example, num_parallel_calls=tf.data.AUTOTUNE)
        ds = ds.filter(lambda ex: target(ex)[1]).repeat()
        ds = ds.take(per_epoch * host_batch).enumerate()
        first = tf.where(epoch == start_epoch, offset * host_batch, 0)
        ds = ds.skip(tf.cast(first, tf.int64))
        return ds.map(lambda i, ex: crop(i, ex, epoch), num_parallel_calls=tf.data.AUTOTUNE)

    ds = tf.data.Dataset.range(start_epoch, _MAX_EPOCHS).flat_map(epoch_dataset)
    return ds.batch(host_batch, drop_remainder=True).prefetch(tf.data.AUTOTUNE)


def num_eval_crops(clip_samples: int, crop_samples: int) -> int:
    """Crops per clip so that together they cover the whole stored clip."""
    return math.ceil(clip_samples / crop_samples)


def _shard_records(shard: HostShard) -> tf.data.Dataset:
    """This process's serialized examples of a split, in split order."""
    files, skips, takes = _records(shard.file_instructions)
    return tf.data.Dataset.range(len(shard.file_instructions)).flat_map(
        lambda i: tf.data.TFRecordDataset(files[i]).skip(skips[i]).take(takes[i]))


def _padded_batches(ds: tf.data.Dataset, padding: dict, shard: HostShard, host_batch: int
                    ) -> tf.data.Dataset:
    """Pads a shard with masked `padding` examples to ceil(max shard size / host_batch) batches,
    the same count on every process, and batches it."""
    num_batches = math.ceil(shard.max_num_examples / host_batch)
    padding = tf.data.Dataset.from_tensors(padding)
    ds = ds.concatenate(padding.repeat(num_batches * host_batch - shard.num_examples))
    return ds.batch(host_batch, drop_remainder=True).prefetch(tf.data.AUTOTUNE)


def host_eval_dataset(builder, split: str, host_batch: int, crop_samples: int,
                      process_index: int = 0, process_count: int = 1,
                      label: str = "genre_top") -> tf.data.Dataset:
    """Every example of this process's shard once, as `num_crops` evenly spaced crops.

    Crops start at linspace(0, num_samples - crop, num_crops): they cover each clip's real audio
    (overlapping where needed). Examples without a `label` target are masked. The shard is
    padded with masked zero examples to ceil(max shard size / host_batch) batches, the same on
    every process.
    """
    shard = host_shard(builder, split, process_index, process_count)
    clip_samples = builder.info.features["audio"].shape[0]
    num_crops = num_eval_crops(clip_samples, crop_samples)
    features = builder.info.features
    target, label_shape = _labeler(builder, label)

    def crops(serialized):
        ex = features.deserialize_example(serialized)
        last = tf.maximum(tf.cast(ex["num_samples"], tf.float32) - crop_samples, 0.0)
        starts = tf.cast(tf.round(tf.linspace(0.0, last, num_crops)), tf.int32)
        idx = starts[:, None] + tf.range(crop_samples)[None, :]
        y, labelled = target(ex)
        return {"audio": tf.gather(ex["audio"], idx), "label": y, "mask": labelled,
                "track_id": ex["track_id"]}

    ds = _shard_records(shard).map(crops, num_parallel_calls=tf.data.AUTOTUNE)
    return _padded_batches(ds, {
        "audio": tf.zeros([num_crops, crop_samples], tf.int16),
        "label": tf.zeros(label_shape, tf.int32), "mask": tf.constant(False),
        "track_id": tf.constant(-1, tf.int32)}, shard, host_batch)


def host_clip_dataset(builder, split: str, host_batch: int, process_index: int = 0,
                      process_count: int = 1, clip_samples: int | None = None) -> tf.data.Dataset:
    """Every whole stored clip of this process's shard once, padded like `host_eval_dataset`.

    Batches: audio int16 [B, clip_samples] (the stored length, or its first `clip_samples`),
    num_samples int32 [B] (real audio before the zero padding), label int32 [B], mask bool [B],
    track_id int32 [B].
    """
    shard = host_shard(builder, split, process_index, process_count)
    features = builder.info.features
    clip_samples = clip_samples or features["audio"].shape[0]

    def clip(serialized):
        ex = features.deserialize_example(serialized)
        return {"audio": ex["audio"][:clip_samples],
                "num_samples": tf.minimum(tf.cast(ex["num_samples"], tf.int32), clip_samples),
                "label": tf.cast(ex["label"], tf.int32), "mask": ex["label"] >= 0,
                "track_id": ex["track_id"]}

    ds = _shard_records(shard).map(clip, num_parallel_calls=tf.data.AUTOTUNE)
    return _padded_batches(ds, {
        "audio": tf.zeros([clip_samples], tf.int16), "num_samples": tf.constant(0),
        "label": tf.constant(0), "mask": tf.constant(False), "track_id": tf.constant(-1)},
        shard, host_batch)


def longest_clip(builder, split: str) -> int:
    """The most real samples (`num_samples`) of any clip of `split`: whole clips fit in it."""
    ds = _shard_records(host_shard(builder, split, 0, 1)).map(
        lambda s: builder.info.features.deserialize_example(s)["num_samples"])
    return int(ds.reduce(tf.constant(0, tf.int32), lambda a, n: tf.maximum(a, tf.cast(n, tf.int32))))


def clips_by_label(builder, split: str, per_label: int, clip_samples: int | None = None
                   ) -> dict[int, dict[str, np.ndarray]]:
    """Up to `per_label` whole clips of each label, the first ones in split order, on this host.

    Returns {label: {"audio": int16 [n, clip_samples], "num_samples": int32 [n],
    "track_id": int32 [n]}}, for small reference sets (every process reads the same clips).
    """
    found = collections.defaultdict(list)
    for clip in host_clip_dataset(builder, split, 1, clip_samples=clip_samples
                                  ).unbatch().as_numpy_iterator():
        if clip["mask"] and len(found[int(clip["label"])]) < per_label:
            found[int(clip["label"])].append(clip)
        if len(found) == builder.info.features["label"].num_classes and all(
                len(v) == per_label for v in found.values()):
            break
    return {label: {k: np.stack([c[k] for c in clips]) for k in ("audio", "num_samples", "track_id")}
            for label, clips in sorted(found.items())}


def host_batch_size(global_batch: int) -> int:
    if global_batch % jax.device_count():
        raise ValueError(f"batch_size={global_batch} must be divisible by the number of "
                         f"devices ({jax.device_count()}).")
    return global_batch // jax.process_count()


def to_global(batches: Iterator[dict], mesh: jax.sharding.Mesh, prefetch: int = 2
              ) -> Iterator[dict]:
    """Host numpy batches -> global `jax.Array`s split over 'data', `prefetch` batches ahead."""
    batch_sharding = sharding.batch_sharding(mesh)
    queue = collections.deque()
    for batch in batches:
        queue.append(jax.tree.map(
            lambda x: jax.make_array_from_process_local_data(batch_sharding, np.asarray(x)), batch))
        if len(queue) > prefetch:
            yield queue.popleft()
    while queue:
        yield queue.popleft()


def unlabeled_examples(builder, split: str) -> int | None:
    """Examples of `split` ('train', 'train+validation', ...) stored with label -1, from the
    builder's record (None for datasets built before it kept one)."""
    counts = builder.info.metadata.get("unlabeled") if builder.info.metadata else None
    if counts is None:
        return None
    return sum(int(counts.get(part.split("[")[0], 0)) for part in split.split("+"))


def train_batches(builder, split: str, global_batch: int, crop_samples: int, seed: int,
                  start_step: int, mesh: jax.sharding.Mesh, shuffle_buffer: int = 1024,
                  label: str = "genre_top") -> Iterator[dict]:
    """Global training batches from `start_step` on: audio [B, crop] int16, label int32 [B]
    ('genre_top') or [B, C] ('genres'). Warns of the examples single-label training leaves
    out (no single genre)."""
    unlabeled = unlabeled_examples(builder, split)
    if unlabeled and label == "genre_top":
        logging.warning("%d of %d %s examples have no single genre (label -1): single-label "
                        "training leaves them out.", unlabeled,
                        builder.info.splits[split].num_examples, split)
    ds = host_train_dataset(builder, split, host_batch_size(global_batch), crop_samples, seed,
                            start_step, jax.process_index(), jax.process_count(), shuffle_buffer,
                            label)
    return to_global(ds.as_numpy_iterator(), mesh)


def clip_batches(builder, split: str, global_batch: int, mesh: jax.sharding.Mesh,
                 clip_samples: int | None = None) -> Iterator[dict]:
    """Global batches of whole clips covering the split once (see `host_clip_dataset`)."""
    ds = host_clip_dataset(builder, split, host_batch_size(global_batch), jax.process_index(),
                           jax.process_count(), clip_samples)
    return to_global(ds.as_numpy_iterator(), mesh)


def eval_batches(builder, split: str, global_batch: int, crop_samples: int,
                 mesh: jax.sharding.Mesh, label: str = "genre_top") -> Iterator[dict]:
    """Global evaluation batches covering the split once (see `host_eval_dataset`)."""
    ds = host_eval_dataset(builder, split, host_batch_size(global_batch), crop_samples,
                           jax.process_index(), jax.process_count(), label)
    return to_global(ds.as_numpy_iterator(), mesh)
