"""The FMA builder under TFDS's own harness, on fake releases zipped (BZIP2) and extracted."""
import json
import tempfile

import numpy as np
import tensorflow_datasets as tfds

import tfds_fma
from tests import fake_fma
from tfds_fma.fma import archive, demo, metadata

_ZIPPED = tempfile.mkdtemp(prefix="fake_fma_zip_")
_EXTRACTED = tempfile.mkdtemp(prefix="fake_fma_dir_")
_BROKEN = fake_fma.make(_ZIPPED, zipped=True)
fake_fma.make(_EXTRACTED, zipped=False)


class _FmaSmallTest(tfds.testing.DatasetBuilderTestCase):
    DATASET_CLASS = tfds_fma.Builder
    BUILDER_CONFIG_NAMES_TO_TEST = ("small",)
    SPLITS = fake_fma.SPLITS
    SKIP_CHECKSUMS = True

    def test_contents(self):
        self._download_and_prepare_as_dataset(self.builder)
        info = self.builder.info
        skipped = {s["track_id"]: s for s in info.metadata["skipped"]}
        self.assertEqual(set(skipped), set(_BROKEN))
        for track_id, kind in _BROKEN.items():
            reason = skipped[track_id]["reason"]
            expected = {"empty": "^empty", "truncated": "^(too short|cannot decode)",
                        "short": r"^too short: 1\.\d\d s", "missing": "^missing"}[kind]
            self.assertRegex(reason, expected, kind)
        self.assertLessEqual({12, 15, 38}, {g["id"] for g in info.metadata["genres"]})
        names = info.features["label"].names
        self.assertEqual(tuple(names), metadata.SMALL_GENRES)
        expected = {t: (s, g) for t, (s, g, _, _) in zip(
            [100 + i * 1013 for i in range(len(fake_fma.GOOD))], fake_fma.GOOD)}
        split_name = {"training": "train", "validation": "validation", "test": "test"}
        clip = 30 * 22050
        for split in ("train", "validation", "test"):
            for ex in tfds.as_numpy(self.builder.as_dataset(split=split)):
                want_split, genre = expected[int(ex["track_id"])]
                self.assertEqual(split_name[want_split], split)
                self.assertEqual(names[ex["label"]], genre)
                self.assertEqual(ex["audio"].dtype, np.int16)
                self.assertEqual(ex["audio"].shape, (clip,))
                # true length kept, rest zero-padded: 6 s clips in a 30 s field
                self.assertAlmostEqual(ex["num_samples"] / 22050, fake_fma.SECONDS, delta=0.1)
                self.assertFalse(ex["audio"][ex["num_samples"]:].any())
                self.assertGreater(np.abs(ex["audio"][:ex["num_samples"]]).max(), 1000)
                self.assertEqual(list(ex["genres"]), [demo.GENRE_IDS[genre]])
        # the skipped list is saved with the dataset, not only held in memory
        saved = json.loads((self.builder.data_path / "metadata.json").read_text())
        self.assertEqual({s["track_id"] for s in saved["skipped"]}, set(_BROKEN))


class FmaZippedTest(_FmaSmallTest):
    EXAMPLE_DIR = _ZIPPED


class FmaExtractedTest(_FmaSmallTest):
    EXAMPLE_DIR = _EXTRACTED


del _FmaSmallTest  # only the concrete cases run


def test_missing_files_are_named_with_where_and_url(tmp_path):
    (tmp_path / "fma_metadata.zip").write_bytes(b"")
    try:
        archive.FmaArchive.locate(str(tmp_path), "medium")
    except archive.MissingFilesError as e:
        msg = str(e)
    else:
        raise AssertionError("no error for a missing audio archive")
    assert "fma_medium.zip" in msg and str(tmp_path / "fma_medium") in msg
    assert "https://os.unil.cloud.switch.ch/fma/fma_medium.zip" in msg
    assert "fma_metadata" not in msg.split("\n", 1)[1]  # present files are not listed as missing


def test_subsets_nest_and_splits_map(tmp_path):
    fake_fma.make(str(tmp_path), zipped=False)
    csv = (tmp_path / "fma_metadata" / "tracks.csv").open("rb")
    small = metadata.read_tracks(csv, "small")
    csv.seek(0)
    medium = metadata.read_tracks(csv, "medium")
    assert 150000 not in {t.track_id for t in small}
    assert {t.track_id for t in medium} == {t.track_id for t in small} | {150000}
    assert {t.split for t in small} == {"train", "validation", "test"}
