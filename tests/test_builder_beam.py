"""The Beam build of `fma/small` (DirectRunner) stores exactly what the default build stores.

Needs the optional `beam` extra (`pip install -e '.[beam]'`); skipped without apache-beam.
"""
import json

import numpy as np
import pytest

beam = pytest.importorskip(
    "apache_beam", reason="apache-beam is not installed (optional extra: pip install -e '.[beam]')")

import tensorflow_datasets as tfds

import tfds_fma  # noqa: F401  (registers fma)
from tfds_fma.fma import demo

SPLITS = ("train", "validation", "test")
# (split, genre or None for "no single top genre", kind): 6 good clips, 2 without a label,
# 3 that the builder must skip.
TRACKS = [("training", "Rock", "good"), ("training", "Pop", "good"), ("training", None, "good"),
          ("training", "Folk", "empty"), ("validation", "Electronic", "good"),
          ("validation", "Hip-Hop", "short"), ("test", "Experimental", "good"),
          ("test", None, "good"), ("test", "International", "good"),
          ("test", "Instrumental", "missing"), ("training", "Rock", "good")]


def _release(manual):
    rng = np.random.default_rng(3)
    tracks, audio = [], {}
    for i, (split, genre, kind) in enumerate(TRACKS):
        track_id = 2 + 1009 * i  # several NNN folders
        tracks.append({"track_id": track_id, "genre": genre, "split": split,
                       "artist_id": 10 + i, "title": f"clip {i} \u00e9\u00e8"})
        sr = (22050, 44100, 32000)[i % 3]
        if kind == "good":
            audio[track_id] = demo.encode_mp3(demo.synthesize(genre or "Rock", 6.0, sr, rng), sr)
        elif kind == "short":
            audio[track_id] = demo.encode_mp3(demo.synthesize(genre, 1.5, sr, rng), sr)
        elif kind == "empty":
            audio[track_id] = b""
    demo.write_release(str(manual), tracks, audio)


def _build(data_dir, manual, **beam_kwargs):
    builder = tfds.builder("fma/small", data_dir=str(data_dir))
    builder.download_and_prepare(download_config=tfds.download.DownloadConfig(
        manual_dir=str(manual), **beam_kwargs))
    return tfds.builder("fma/small", data_dir=str(data_dir))  # reloaded from the files


def _examples(builder, split):
    out = {}
    for ex in tfds.as_numpy(builder.as_dataset(split=split)):
        out[int(ex["track_id"])] = (ex["audio"].tobytes(), int(ex["label"]), int(ex["num_samples"]),
                                    tuple(ex["genres"].tolist()), int(ex["artist_id"]),
                                    int(ex["album_id"]), ex["title"])
    return out


def test_beam_build_matches_default_build(tmp_path):
    _release(tmp_path / "manual")
    default = _build(tmp_path / "default", tmp_path / "manual")
    options = beam.options.pipeline_options.PipelineOptions(["--runner=DirectRunner"])
    on_beam = _build(tmp_path / "beam", tmp_path / "manual", beam_options=options)

    for split in SPLITS:
        want, got = _examples(default, split), _examples(on_beam, split)
        assert want == got, split
        assert default.info.splits[split].num_examples == on_beam.info.splits[split].num_examples
        assert default.info.splits[split].num_bytes == on_beam.info.splits[split].num_bytes
    assert {s: default.info.splits[s].num_examples for s in SPLITS} == {
        "train": 4, "validation": 1, "test": 3}

    for builder in (default, on_beam):
        meta = builder.info.metadata
        assert [(s["track_id"], s["split"]) for s in meta["skipped"]] == [
            (2 + 1009 * 3, "train"), (2 + 1009 * 5, "validation"), (2 + 1009 * 9, "test")]
        assert dict(meta["unlabeled"]) == {"train": 1, "validation": 0, "test": 1}
    assert list(on_beam.info.metadata["skipped"]) == list(default.info.metadata["skipped"])
    saved = json.loads((on_beam.data_path / "metadata.json").read_text())
    assert saved["skipped"] == list(default.info.metadata["skipped"])
    # the Beam path's hand-over files do not stay in the dataset
    assert not any("fma_beam" in p.name for p in on_beam.data_path.iterdir())
