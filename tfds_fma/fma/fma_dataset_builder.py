"""TFDS builder for the Free Music Archive (FMA): `tfds.load('fma/small')` after `import tfds_fma`.

Each MP3 is decoded once, at build time, in parallel over all cores, and stored as int16 mono PCM
at the config's sample rate (TFDS's default int64 audio is 4x larger and slower to parse).
Clips that cannot be stored (undecodable, too short, missing, or a corrupt zip member) are
skipped with a warning and listed, with the reason, in the dataset info
(`builder.info.metadata['skipped']`); the build never stops for one bad clip.
"""
import collections
import dataclasses
import io
from collections.abc import Iterator

import numpy as np
import tensorflow_datasets as tfds
from absl import logging

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
    configs.append(FmaConfig(
        name="demo", subset="small", sample_rate=22050, clip_seconds=10.0, synthetic=True,
        description="Synthetic FMA-layout release generated locally (8 styles x 50 clips of "
                    "10 s), built by the same code as `small`; for demos and tests."))
    return configs


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
        self.info.metadata["unlabeled"] = {"train": 0, "validation": 0, "test": 0}
        self.info.metadata["min_seconds"] = decode.MIN_SECONDS
        by_split = collections.defaultdict(list)
        for t in tracks:
            by_split[t.split].append(t)
        return {split: self._generate_examples(fma, by_split[split])
                for split in ("train", "validation", "test")}

    def _generate_examples(self, fma: archive_lib.FmaArchive,
                           tracks: list[metadata.Track]) -> Iterator[tuple[int, dict]]:
        cfg = self.builder_config
        names = metadata.genre_names(cfg.subset)
        skipped, unlabeled = self.info.metadata["skipped"], self.info.metadata["unlabeled"]
        decoded = _decode_all(fma, [t.track_id for t in tracks], cfg.sample_rate, cfg.clip_seconds)
        for track, (audio, num_samples, reason) in zip(tracks, decoded):
            if reason is not None:
                logging.warning("Skipping FMA track %06d (%s): %s", track.track_id, track.split, reason)
                skipped.append({"track_id": track.track_id, "split": track.split, "reason": reason})
                continue
            # Tracks of fma_large without a single top genre keep label -1 ("no label").
            label = names.index(track.genre_top) if track.genre_top in names else -1
            unlabeled[track.split] += label < 0
            yield track.track_id, {
                "audio": audio,
                "num_samples": num_samples,
                "label": label,
                "genres": np.array(track.genres_all, np.int32),
                "track_id": track.track_id,
                "artist_id": track.artist_id,
                "album_id": track.album_id,
                "title": track.title,
            }


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
