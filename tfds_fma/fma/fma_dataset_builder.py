"""TFDS builder for the Free Music Archive (FMA): `tfds.load('fma/small')` after `import tfds_fma`.

Each MP3 is decoded once, at build time, in parallel over all cores, and stored as int16 mono PCM
at the config's sample rate (TFDS's default int64 audio is 4x larger and slower to parse).
Clips that cannot be stored (undecodable, too short, missing, or a corrupt zip member) are
skipped with a warning and listed, with the reason, in the dataset info
(`builder.info.metadata['skipped']`); the build never stops for one bad clip.

Two ways to build, chosen by TFDS's `DownloadConfig` and independent of the config:
  * default (no `beam_runner` / `beam_options`): this process decodes on a thread pool;
  * Apache Beam (`pip install 'jaxgenre[beam]'`, then `beam_runner` or `beam_options` given,
    e.g. `tfds build ... --beam_pipeline_options=...`): the same examples, decoded by a Beam
    pipeline on any runner (DirectRunner, Dataflow, Spark, Flink). Workers cannot update the
    builder's metadata, so they send their skipped clips to a side output that the pipeline
    writes to a file; after the pipeline, the builder fills `skipped` and `unlabeled` from it,
    in the same order and with the same values as the default path.
apache_beam is imported only on the Beam path.
"""
import collections
import dataclasses
import io
import json
from collections.abc import Iterator

import numpy as np
import tensorflow_datasets as tfds
from absl import logging
from etils import epath

from tfds_fma.fma import archive as archive_lib
from tfds_fma.fma import decode, demo, metadata


class PcmAudio(tfds.features.Audio):
    """Audio stored as raw int16 bytes.

    TFDS 4.9's `Audio.encode_example` returns numpy input unencoded, which breaks
    `encoding=BYTES`; this sends arrays through the tensor encoder as intended.
    """

    def encode_example(self, audio):
        return tfds.features.Tensor.encode_example(self, np.asarray(audio, self.np_dtype))


@dataclasses.dataclass
class FmaConfig(tfds.core.BuilderConfig):
    """One FMA subset at one sample rate.

    Attributes:
      subset: 'small' | 'medium' | 'large' (tracks of smaller subsets included, as released).
      sample_rate: stored audio rate in Hz.
      clip_seconds: stored clip length; shorter clips are zero-padded (`num_samples` keeps the
        true length), longer ones cropped.
      synthetic: generate a synthetic release (see `demo.py`) instead of reading manual files.
    """
    subset: str = "small"
    sample_rate: int = 22050
    clip_seconds: float = 30.0
    synthetic: bool = False


def _configs() -> list[FmaConfig]:
    configs = []
    for subset, classes in (("small", 8), ("medium", 16), ("large", 16)):
        for rate, suffix in ((22050, ""), (16000, "_16k")):
            configs.append(FmaConfig(
                name=subset + suffix, subset=subset, sample_rate=rate,
                description=f"fma_{subset}: 30 s clips, {classes} genres, {rate} Hz mono int16."))
    for rate, suffix in ((22050, ""), (16000, "_16k")):
        configs.append(FmaConfig(
            name="demo" + suffix, subset="small", sample_rate=rate, clip_seconds=10.0,
            synthetic=True,
            description=f"Synthetic FMA-layout release generated locally (8 styles x 50 clips of "
                        f"10 s, {rate} Hz), built by the same code as `small`; for demos and "
                        "tests."))
    return configs


SPLITS = ("train", "validation", "test")
# Under Beam, where the builder hands the track lists to the workers and they hand back the
# skipped clips: a folder in the dataset's temporary build dir, deleted before it completes.
_BEAM_DIR = "fma_beam_tmp"


class Builder(tfds.core.GeneratorBasedBuilder):
    """DatasetBuilder for FMA (small / medium / large, 22.05 kHz or 16 kHz, and a demo)."""

    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES = {"1.0.0": "Initial release: int16 mono audio, official splits."}
    BUILDER_CONFIGS = _configs()
    MANUAL_DOWNLOAD_INSTRUCTIONS = f"""
    Download FMA's files from https://github.com/mdeff/fma and put them, as released, in the
    manual dir (`--manual_dir`, default ~/tensorflow_datasets/downloads/manual):
      fma_metadata.zip   {archive_lib.METADATA_URL}
      fma_<subset>.zip   {archive_lib.AUDIO_URL}  (subset: small, medium or large)
    The extracted folders `fma_metadata/` and `fma_<subset>/` work as well. The `demo` config
    needs no files.
    """

    # {split: (tracks, skipped-records path)} while building on Beam; None on the default path.
    _beam_splits: dict | None = None

    def _info(self) -> tfds.core.DatasetInfo:
        cfg = self.builder_config
        clip_samples = round(cfg.clip_seconds * cfg.sample_rate)
        return self.dataset_info_from_configs(
            features=tfds.features.FeaturesDict({
                "audio": PcmAudio(
                    shape=(clip_samples,), dtype=np.int16, sample_rate=cfg.sample_rate,
                    encoding=tfds.features.Encoding.BYTES),
                "num_samples": np.int32,
                "label": tfds.features.ClassLabel(names=metadata.genre_names(cfg.subset)),
                "genres": tfds.features.Sequence(np.int32),
                "track_id": np.int32,
                "artist_id": np.int32,
                "album_id": np.int32,
                "title": tfds.features.Text(),
            }),
            supervised_keys=("audio", "label"),
            homepage="https://github.com/mdeff/fma",
            metadata=tfds.core.MetadataDict(),
        )

    def _download_and_prepare(self, dl_manager: tfds.download.DownloadManager,
                              download_config: tfds.download.DownloadConfig) -> None:
        # TFDS's own switch: a Beam pipeline is created only when the user gives a runner or
        # options (`tfds build --beam_pipeline_options=...` sets `beam_options`).
        beam = download_config.beam_runner is not None or download_config.beam_options is not None
        logging.info("Building %s %s.", self.info.full_name,
                     "with Apache Beam" if beam else "in this process (no Beam runner given)")
        self._beam_splits = {} if beam else None
        try:
            super()._download_and_prepare(dl_manager, download_config)
        finally:
            self._beam_splits = None

    def _split_generators(self, dl_manager: tfds.download.DownloadManager):
        cfg = self.builder_config
        if cfg.synthetic:
            root = dl_manager.download_dir / "fma_demo_release"
            if not (root / "fma_small.zip").exists():
                demo.generate(str(root))
        else:
            root = dl_manager.manual_dir
        fma = archive_lib.FmaArchive.locate(str(root), cfg.subset)
        tracks = metadata.read_tracks(io.BytesIO(fma.read_metadata("tracks.csv")), cfg.subset,
                                      fma.metadata_name("tracks.csv"))
        self.info.metadata["genres"] = metadata.read_genres(
            io.BytesIO(fma.read_metadata("genres.csv")), fma.metadata_name("genres.csv"))
        self.info.metadata["skipped"] = []
        # examples stored with label -1 (fma_large tracks without a single top genre), by split
        self.info.metadata["unlabeled"] = dict.fromkeys(SPLITS, 0)
        self.info.metadata["min_seconds"] = decode.MIN_SECONDS
        by_split = collections.defaultdict(list)
        for t in tracks:
            by_split[t.split].append(t)
        return {split: self._generate_examples(fma, split, by_split[split]) for split in SPLITS}

    def _generate_examples(self, fma: archive_lib.FmaArchive, split: str,
                           tracks: list[metadata.Track]):
        """The examples of one split: an iterator, or on Beam a `beam.PTransform` yielding them."""
        if self._beam_splits is not None:
            return self._beam_examples(fma, split, tracks)
        return self._iter_examples(fma, tracks)

    def _iter_examples(self, fma: archive_lib.FmaArchive,
                       tracks: list[metadata.Track]) -> Iterator[tuple[int, dict]]:
        cfg = self.builder_config
        names = metadata.genre_names(cfg.subset)
        skipped, unlabeled = self.info.metadata["skipped"], self.info.metadata["unlabeled"]
        decoded = _decode_all(fma, [t.track_id for t in tracks], cfg.sample_rate, cfg.clip_seconds)
        for track, (audio, num_samples, reason) in zip(tracks, decoded):
            if reason is not None:
                _log_skipped(track, reason)
                skipped.append(_skipped_record(track, reason))
                continue
            example = _example(track, audio, num_samples, names)
            unlabeled[track.split] += example["label"] < 0
            yield track.track_id, example

    def _beam_examples(self, fma: archive_lib.FmaArchive, split: str,
                       tracks: list[metadata.Track]):
        """A `beam.PTransform` that yields the examples of `tracks` and records the skipped ones.

        The tracks go to the workers as a JSON-lines file next to the dataset being built (a
        `beam.Create` of fma_large's 106,574 tracks would put ~20 MB into the pipeline graph, over
        Dataflow's limit). Each worker opens the archive itself (the zips are cached per process).
        """
        beam = tfds.core.lazy_imports_lib.lazy_imports.apache_beam
        cfg = self.builder_config
        folder = epath.Path(self.data_dir) / _BEAM_DIR  # the build's temporary dir, shared storage
        folder.mkdir(parents=True, exist_ok=True)
        manifest, report = folder / f"{split}-tracks.jsonl", folder / f"{split}-skipped.json"
        manifest.write_text("".join(json.dumps(dataclasses.asdict(t)) + "\n" for t in tracks))
        report.unlink(missing_ok=True)
        self._beam_splits[split] = (tracks, report)
        return beam.ptransform_fn(_beam_split)(  # pylint: disable=no-value-for-parameter
            manifest=str(manifest), report=str(report), fma=fma, sample_rate=cfg.sample_rate,
            clip_seconds=cfg.clip_seconds, names=metadata.genre_names(cfg.subset))

    def _process_pipeline_result(self, pipeline_result) -> None:
        """After the Beam pipeline: `skipped` and `unlabeled` as the default path records them.

        `skipped` in split order, then track order; `unlabeled` counts the stored examples with
        label -1, which are the tracks without a known genre that were not skipped.
        """
        del pipeline_result  # the pipeline has finished; its outputs are in the report files
        if not self._beam_splits:
            return
        skipped, unlabeled = self.info.metadata["skipped"], self.info.metadata["unlabeled"]
        names = metadata.genre_names(self.builder_config.subset)
        for split in SPLITS:
            if split not in self._beam_splits:
                continue
            tracks, report = self._beam_splits[split]
            if not report.exists():
                raise RuntimeError(f"The Beam pipeline finished without writing {report}, the "
                                   f"skipped clips of split {split}; the dataset info would be wrong.")
            by_id = {r["track_id"]: r for r in json.loads(report.read_text())}
            for track in tracks:
                if track.track_id in by_id:
                    skipped.append(by_id.pop(track.track_id))
                else:
                    unlabeled[split] += _label(track, names) < 0
            if by_id:
                raise RuntimeError(f"{report} lists tracks that are not in split {split}: "
                                   f"{sorted(by_id)[:10]}")
        if skipped:
            logging.warning("Skipped %d FMA tracks (see info.metadata['skipped']).", len(skipped))
        (epath.Path(self.data_dir) / _BEAM_DIR).rmtree(missing_ok=True)


def _label(track: metadata.Track, names: tuple[str, ...]) -> int:
    """The class index of the track's top genre; -1 ("no label") for tracks of fma_large without
    a single top genre."""
    return names.index(track.genre_top) if track.genre_top in names else -1


def _example(track: metadata.Track, audio: np.ndarray, num_samples: int,
             names: tuple[str, ...]) -> dict:
    return {
        "audio": audio,
        "num_samples": num_samples,
        "label": _label(track, names),
        "genres": np.array(track.genres_all, np.int32),
        "track_id": track.track_id,
        "artist_id": track.artist_id,
        "album_id": track.album_id,
        "title": track.title,
    }


def _skipped_record(track: metadata.Track, reason: str) -> dict:
    return {"track_id": track.track_id, "split": track.split, "reason": reason}


def _log_skipped(track: metadata.Track, reason: str) -> None:
    logging.warning("Skipping FMA track %06d (%s): %s", track.track_id, track.split, reason)


def _beam_split(pbegin, manifest: str, report: str, fma: archive_lib.FmaArchive,
                sample_rate: int, clip_seconds: float, names: tuple[str, ...]):
    """The Beam transform of one split (wrapped by `beam.ptransform_fn`): reads the tracks,
    spreads them over the workers, decodes them, and writes the skipped ones to `report`."""
    beam = tfds.core.lazy_imports_lib.lazy_imports.apache_beam
    decoded = (
        pbegin
        | "ReadTracks" >> beam.io.ReadFromText(manifest)
        | "Spread" >> beam.Reshuffle()
        | "Decode" >> beam.FlatMap(_beam_decode, fma=fma, sample_rate=sample_rate,
                                   clip_seconds=clip_seconds, names=names
                                   ).with_outputs("skipped", main="examples"))
    _ = (decoded.skipped
         | "CollectSkipped" >> beam.combiners.ToList()
         | "WriteSkipped" >> beam.Map(_write_json, path=report))
    return decoded.examples


def _beam_decode(line: str, fma: archive_lib.FmaArchive, sample_rate: int,
                 clip_seconds: float, names: tuple[str, ...]):
    """On a Beam worker: (track_id, example), or the skipped record to the 'skipped' output."""
    beam = tfds.core.lazy_imports_lib.lazy_imports.apache_beam
    fields = json.loads(line)
    track = metadata.Track(**{**fields, "genres_all": tuple(fields["genres_all"])})
    audio, num_samples, reason = _decode_one(fma, track.track_id, sample_rate, clip_seconds)
    if reason is not None:
        _log_skipped(track, reason)
        yield beam.pvalue.TaggedOutput("skipped", _skipped_record(track, reason))
        return
    yield track.track_id, _example(track, audio, num_samples, names)


def _write_json(records: list, path: str) -> None:
    epath.Path(path).write_text(json.dumps(records))


def _decode_one(fma: archive_lib.FmaArchive, track_id: int, sample_rate: int,
                clip_seconds: float) -> tuple[np.ndarray | None, int, str | None]:
    """(audio, num_samples, None), or (None, 0, reason) when the clip cannot be stored."""
    try:
        data = fma.read_audio(track_id)
    except (KeyError, FileNotFoundError):
        return None, 0, f"missing from {fma.audio}"
    except archive_lib.CorruptMemberError as e:
        return None, 0, str(e)
    try:
        audio, num_samples = decode.decode_clip(data, sample_rate, clip_seconds)
    except decode.UndecodableError as e:
        return None, 0, str(e)
    return audio, num_samples, None


def _decode_all(fma, track_ids, sample_rate, clip_seconds, workers=None, window=256):
    """Decodes tracks in order over all cores (workers=None), with at most `window` results held in memory."""
    with decode.worker_pool(workers) as pool:
        pending = collections.deque()
        for track_id in track_ids:
            pending.append(pool.submit(_decode_one, fma, track_id, sample_rate, clip_seconds))
            if len(pending) >= window:
                yield pending.popleft().result()
        while pending:
            yield pending.popleft().result()
