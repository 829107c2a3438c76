"""Input pipeline: shapes, sharding, per-process disjoint shards, exactly-once eval, determinism."""
import collections

import numpy as np
import pytest
import tensorflow as tf

from jaxgenre.core import sharding
from jaxgenre.data import input_pipeline as ip

CROP = 22050  # 1 s


@pytest.fixture(scope="module")
def builder(tiny_fma):
    return ip.load_builder("fma/small", tiny_fma[0])


def _first(ds, n):
    return list(ds.take(n).as_numpy_iterator())


def _track_ids(instructions):
    """Track ids of the records a process reads, straight from its file instructions."""
    ids = []
    for fi in instructions:
        for rec in tf.data.TFRecordDataset(fi.filename).skip(fi.skip).take(fi.take):
            ex = tf.train.Example.FromString(rec.numpy())
            ids.append(ex.features.feature["track_id"].int64_list.value[0])
    return ids


def test_train_batches_shapes_dtypes_and_sharding(builder):
    mesh = sharding.make_mesh()
    batch = next(ip.train_batches(builder, "train", 16, CROP, seed=0, start_step=0, mesh=mesh))
    assert batch["audio"].shape == (16, CROP) and batch["audio"].dtype == np.int16
    assert batch["label"].shape == (16,) and batch["label"].dtype == np.int32
    assert batch["audio"].sharding == sharding.batch_sharding(mesh)
    shards = batch["audio"].addressable_shards
    assert len(shards) == 8 and {s.data.shape for s in shards} == {(2, CROP)}
    assert 0 <= batch["label"].min() and batch["label"].max() < 8
    assert np.abs(np.asarray(batch["audio"])).max() > 1000  # real audio, not padding


def test_process_shards_are_disjoint_and_complete(builder):
    parts = [ip.host_shard(builder, "train", i, 2) for i in range(2)]
    a, b = (set(_track_ids(p.file_instructions)) for p in parts)
    assert a and b and not a & b
    assert len(a | b) == builder.info.splits["train"].num_examples


def test_train_plus_validation_reads_both_splits(builder):
    both = ip.host_shard(builder, "train+validation", 0, 1)
    ids = set(_track_ids(both.file_instructions))
    train = set(_track_ids(ip.host_shard(builder, "train", 0, 1).file_instructions))
    val = set(_track_ids(ip.host_shard(builder, "validation", 0, 1).file_instructions))
    assert ids == train | val and len(ids) == both.num_examples == len(train) + len(val)


def test_same_seed_same_batches_and_resume_continues_the_stream(builder):
    run = _first(ip.host_train_dataset(builder, "train", 8, CROP, seed=1), 10)  # 4 steps/epoch
    again = _first(ip.host_train_dataset(builder, "train", 8, CROP, seed=1), 10)
    other = _first(ip.host_train_dataset(builder, "train", 8, CROP, seed=2), 10)
    for x, y in zip(run, again):
        np.testing.assert_array_equal(x["audio"], y["audio"])
    assert not all(np.array_equal(x["audio"], y["audio"]) for x, y in zip(run, other))
    resumed = _first(ip.host_train_dataset(builder, "train", 8, CROP, seed=1, start_step=3), 7)
    for x, y in zip(run[3:], resumed):  # crosses the epoch boundary at step 4
        np.testing.assert_array_equal(x["audio"], y["audio"])
    # epochs differ in order, and every epoch sees each training clip once
    labels = [np.sort(np.concatenate([b["label"] for b in run[e * 4:(e + 1) * 4]])) for e in (0, 1)]
    np.testing.assert_array_equal(labels[0], labels[1])
    assert not np.array_equal(run[0]["audio"], run[4]["audio"])


@pytest.mark.parametrize("process_count,host_batch", [(1, 16), (1, 6), (2, 5), (3, 4)])
def test_eval_sees_every_example_exactly_once(builder, process_count, host_batch):
    seen, batch_counts = collections.Counter(), set()
    for p in range(process_count):
        batches = list(ip.host_eval_dataset(builder, "test", host_batch, CROP, p,
                                            process_count).as_numpy_iterator())
        batch_counts.add(len(batches))
        for b in batches:
            seen.update(b["track_id"][b["mask"]].tolist())
            assert not b["track_id"][~b["mask"]].size or (b["track_id"][~b["mask"]] == -1).all()
    assert len(batch_counts) == 1  # every process runs the same number of eval steps
    expected = _track_ids(builder.info.splits["test"].file_instructions)
    assert seen == collections.Counter(expected)


def test_eval_crops_cover_each_clip(builder):
    batch = next(ip.host_eval_dataset(builder, "test", 4, CROP).as_numpy_iterator())
    assert batch["audio"].shape == (4, 30, CROP)  # ceil(30 s stored clip / 1 s crop)
    raw = next(iter(builder.as_dataset(split="test", shuffle_files=False)))
    n = int(raw["num_samples"])
    audio = raw["audio"].numpy()
    np.testing.assert_array_equal(batch["audio"][0, 0], audio[:CROP])
    np.testing.assert_array_equal(batch["audio"][0, -1], audio[n - CROP:n])


def test_unknown_dataset_and_missing_files_are_clear_errors(tmp_path):
    with pytest.raises(ip.DatasetUnavailableError, match="fma/small"):
        ip.load_builder("fma/tiny", str(tmp_path))
    (tmp_path / "manual").mkdir()
    (tmp_path / "manual" / "README").write_text("nothing here")
    with pytest.raises(ip.DatasetUnavailableError, match="fma_metadata.zip"):
        ip.load_builder("fma/medium", str(tmp_path / "data"), str(tmp_path / "manual"))
