"""The FMA builder on bad input: unguarded scripts, corrupt or truncated zips, malformed metadata."""
import csv
import io
import os
import re
import struct
import subprocess
import sys
import textwrap
import zipfile

import pytest
import tensorflow_datasets as tfds

import tfds_fma
from tests import fake_fma
from tfds_fma.fma import archive, demo, metadata

_REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _build(data_dir, manual_dir):
    """Builds `fma/small` from `manual_dir`; returns the builder."""
    builder = tfds_fma.Builder(config="small", data_dir=str(data_dir))
    builder.download_and_prepare(
        download_config=tfds.download.DownloadConfig(manual_dir=str(manual_dir)))
    return builder


def test_builds_from_a_script_without_main_guard(tmp_path):
    # Worker processes started with 'spawn' re-run such a script and crashed it
    # (BrokenProcessPool); both the synthesis and the decoding pools are exercised here.
    script = tmp_path / "build_fma.py"
    script.write_text(textwrap.dedent(f"""\
        import tensorflow_datasets as tfds
        import tfds_fma
        from tfds_fma.fma import demo

        demo.generate({str(tmp_path / "manual")!r}, tracks_per_genre=3, tracks_per_artist=1,
                      seconds=6.0, workers=2)
        ds = tfds.load("fma/small", split="train", data_dir={str(tmp_path / "data")!r},
                       download_and_prepare_kwargs={{"download_config": tfds.download.DownloadConfig(
                           manual_dir={str(tmp_path / "manual")!r})}})
        print("examples:", len(ds))
        """))
    # The script imports this checkout's tfds_fma, whatever is installed.
    path = [_REPO] + os.environ.get("PYTHONPATH", "").split(os.pathsep)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, path))}
    done = subprocess.run([sys.executable, str(script)], env=env, capture_output=True, text=True,
                          timeout=600, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "examples: 8" in done.stdout


def _corrupt_member(zip_path, member):
    """Flips 16 bytes in the middle of `member`'s compressed data, in place."""
    with zipfile.ZipFile(zip_path) as z:
        info = z.getinfo(member)
    with open(zip_path, "r+b") as f:
        f.seek(info.header_offset + 26)
        name_len, extra_len = struct.unpack("<HH", f.read(4))
        middle = info.header_offset + 30 + name_len + extra_len + info.compress_size // 2
        f.seek(middle)
        flipped = bytes(b ^ 0xFF for b in f.read(16))
        f.seek(middle)
        f.write(flipped)


def test_corrupt_zip_member_is_skipped_and_named(tmp_path):
    manual = tmp_path / "manual"
    broken = fake_fma.make(str(manual), zipped=True)
    track_id = 100  # the first good clip (training split)
    member = f"fma_small/000/{track_id:06d}.mp3"
    _corrupt_member(manual / "fma_small.zip", member)
    builder = _build(tmp_path / "data", manual)
    skipped = {s["track_id"]: s["reason"] for s in builder.info.metadata["skipped"]}
    assert set(skipped) == set(broken) | {track_id}
    assert member in skipped[track_id] and "corrupt" in skipped[track_id]
    assert builder.info.splits["train"].num_examples == fake_fma.SPLITS["train"] - 1


def test_truncated_zip_is_named_with_advice(tmp_path):
    manual = tmp_path / "manual"
    fake_fma.make(str(manual), zipped=True)
    zip_path = manual / "fma_small.zip"
    data = zip_path.read_bytes()
    zip_path.write_bytes(data[: len(data) // 2])
    with pytest.raises(archive.CorruptArchiveError) as e:
        _build(tmp_path / "data", manual)
    msg = str(e.value)
    assert str(zip_path) in msg and "truncated" in msg and "download it again" in msg
    assert archive.AUDIO_URL.format(subset="small") in msg


# --- malformed metadata ---------------------------------------------------------------------

_TRACKS = [{"track_id": 2 + i, "genre": g, "split": s, "artist_id": 10 + i, "title": f"t{i}"}
           for i, (g, s) in enumerate([("Rock", "training"), ("Pop", "validation"),
                                       ("Folk", "test")])]


def _metadata_files(tmp_path) -> dict[str, str]:
    """{'tracks.csv': text, 'genres.csv': text} of a small, valid release."""
    demo.write_release(str(tmp_path), _TRACKS, {}, zipped=False)
    folder = tmp_path / "fma_metadata"
    return {name: (folder / name).read_text() for name in ("tracks.csv", "genres.csv")}


def _edit_cells(text, edit):
    """The CSV `text` with `edit(rows)` applied to its rows (lists of cells)."""
    rows = list(csv.reader(io.StringIO(text)))
    edit(rows)
    out = io.StringIO()
    csv.writer(out, lineterminator="\n").writerows(rows)
    return out.getvalue()


def _column_index(rows, column):
    """Where tracks.csv's `column` (level 0, level 1) is in its rows, or genres.csv's `column`."""
    if isinstance(column, str):
        return rows[0].index(column)
    return next(i for i in range(len(rows[0])) if (rows[0][i], rows[1][i]) == column)


def _drop_column(text, column):
    """`text` without the column `column`."""
    def edit(rows):
        i = _column_index(rows, column)
        for row in rows:
            del row[i]
    return _edit_cells(text, edit)


def _set_cell(text, first_cell, column, value):
    """`text` with `column` set to `value` in the row that starts with `first_cell`."""
    def edit(rows):
        next(r for r in rows if r[0] == first_cell)[_column_index(rows, column)] = value
    return _edit_cells(text, edit)


def _cut_mid_last_row(text):
    """`text` cut in the middle of its last line."""
    last = text.rstrip("\n").rfind("\n") + 1
    return text[: last + (len(text) - last) // 2]


@pytest.mark.parametrize("filename, corrupt, expected", [
    ("tracks.csv", lambda t: _drop_column(t, ("set", "split")),
     [r"tracks\.csv lacks column\(s\) \('set', 'split'\)"]),
    ("tracks.csv", lambda t: t.replace("\n3,", "\n3x,"),  # track 3's id
     [r"tracks\.csv, data row 2, column track_id: got '3x', expected an integer"]),
    ("tracks.csv", lambda t: _set_cell(t, "3", ("set", "split"), "train"),
     [r"tracks\.csv", "track 3", r"\('set', 'split'\)", "'train'",
      "expected one of training, validation, test"]),
    ("tracks.csv", lambda t: _set_cell(t, "4", ("track", "genres_all"), "[17, "),
     [r"tracks\.csv", "track 4", r"\('track', 'genres_all'\)", r"'\[17, '",
      "expected a list of genre ids"]),
    ("tracks.csv", _cut_mid_last_row, [r"tracks\.csv is truncated", "line 6", "download"]),
    ("genres.csv", lambda t: _drop_column(t, "#tracks"),
     [r"genres\.csv lacks column\(s\) #tracks"]),
    ("genres.csv", lambda t: _set_cell(t, "21", "parent", "zero"),
     [r"genres\.csv", "line 7", "parent", "'zero'", "expected an integer"]),
    ("genres.csv", _cut_mid_last_row, [r"genres\.csv is truncated", "line 10", "download"]),
], ids=["tracks-missing-column", "tracks-track-id", "tracks-split", "tracks-genres-all",
        "tracks-truncated", "genres-missing-column", "genres-parent", "genres-truncated"])
def test_malformed_metadata_is_named(tmp_path, filename, corrupt, expected):
    text = corrupt(_metadata_files(tmp_path)[filename])
    fileobj = io.BytesIO(text.encode())
    with pytest.raises(ValueError) as e:
        if filename == "tracks.csv":
            metadata.read_tracks(fileobj, "small")
        else:
            metadata.read_genres(fileobj)
    for pattern in expected:
        e.match(pattern)


def test_builder_names_the_metadata_path(tmp_path):
    fake_fma.make(str(tmp_path / "manual"), zipped=False)
    tracks_csv = tmp_path / "manual" / "fma_metadata" / "tracks.csv"
    tracks_csv.write_text(_cut_mid_last_row(tracks_csv.read_text()))
    with pytest.raises(ValueError, match="^" + re.escape(f"{tracks_csv} is truncated")):
        _build(tmp_path / "data", tmp_path / "manual")


def test_valid_metadata_reads(tmp_path):
    files = _metadata_files(tmp_path)
    tracks = metadata.read_tracks(io.BytesIO(files["tracks.csv"].encode()), "small")
    assert [(t.track_id, t.split, t.genres_all) for t in tracks] == [
        (2, "train", (12,)), (3, "validation", (10,)), (4, "test", (17,))]
    genres = metadata.read_genres(io.BytesIO(files["genres.csv"].encode()))
    assert {"id": 21, "title": "Hip-Hop", "parent": 0, "top_level": 21, "num_tracks": 0} in genres
