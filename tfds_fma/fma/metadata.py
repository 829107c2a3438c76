"""FMA metadata as released (mdeff/fma): `tracks.csv` and `genres.csv`.

`tracks.csv` has a two-level column header (e.g. `('set', 'split')`) and one extra header line
naming the index (`track_id`). `('set', 'subset')` holds the smallest subset a track is in
(small < medium < large), and `('set', 'split')` the official artist-filtered split.
"""
import ast
import dataclasses
import io
from collections.abc import Callable
from typing import BinaryIO

import numpy as np
import pandas as pd

SUBSETS = ("small", "medium", "large")
SPLIT_NAMES = {"training": "train", "validation": "validation", "test": "test"}

# The columns the dataset reads; the release has more.
SUBSET, SPLIT = ("set", "subset"), ("set", "split")
TRACK_COLUMNS = (SUBSET, SPLIT, ("track", "genre_top"), ("track", "genres_all"),
                 ("track", "title"), ("artist", "id"), ("album", "id"))
GENRE_COLUMNS = ("genre_id", "#tracks", "parent", "title", "top_level")

# The 8 balanced genres of fma_small and the 16 root genres of fma_medium / fma_large.
SMALL_GENRES = ("Electronic", "Experimental", "Folk", "Hip-Hop", "Instrumental",
                                "International", "Pop", "Rock")
ROOT_GENRES = tuple(sorted(SMALL_GENRES + (
        "Blues", "Classical", "Country", "Easy Listening", "Jazz", "Old-Time / Historic",
        "Soul-RnB", "Spoken")))


@dataclasses.dataclass(frozen=True)
class Track:
    """One row of tracks.csv, reduced to what the dataset stores."""
    track_id: int
    split: str  # 'train' | 'validation' | 'test'
    genre_top: str | None  # None where FMA gives no single top genre (large only)
    genres_all: tuple[int, ...]
    artist_id: int
    album_id: int  # -1 when the track has no album
    title: str


def genre_names(subset: str) -> tuple[str, ...]:
    """The class names of `label` for a subset."""
    return SMALL_GENRES if subset == "small" else ROOT_GENRES


def read_tracks(fileobj: BinaryIO, subset: str, name: str = "tracks.csv") -> list[Track]:
    """Parses tracks.csv and returns the tracks of `subset` (with its smaller subsets), by id.

    Args:
      fileobj: the file's bytes.
      subset: 'small' | 'medium' | 'large'.
      name: the file as error messages name it (a path, or a member and its zip).

    Raises:
      ValueError: the file is truncated or not CSV, lacks a column, has a value of the wrong
        form, or holds no track of `subset`; the message names the file, the track (or data
        row) and column, and what was expected.
    """
    if subset not in SUBSETS:
        raise ValueError(f"Unknown FMA subset {subset!r}; expected one of {SUBSETS}.")
    df = _read_csv(fileobj, name, index_col=0, header=[0, 1], low_memory=False)
    _check_columns(df, TRACK_COLUMNS, name)
    ids = pd.to_numeric(df.index, errors="coerce")
    bad_ids = np.flatnonzero(pd.isna(ids) | (ids % 1 != 0))
    if bad_ids.size:
        row = bad_ids[0]
        raise _bad_value(f"{name}, data row {row + 1}", "track_id", df.index[row], "an integer")
    df.index = ids.astype(np.int64)
    # A misspelt subset would silently drop the track from every subset.
    unknown = np.flatnonzero(~df[SUBSET].isin(SUBSETS))
    if unknown.size:
        row = unknown[0]
        raise _bad_value(f"{name}, track {df.index[row]}", SUBSET, df[SUBSET].iloc[row],
                         f"one of {', '.join(SUBSETS)}")
    wanted = SUBSETS[: SUBSETS.index(subset) + 1]
    df = df[df[SUBSET].isin(wanted)].sort_index()
    if df.empty:
        raise ValueError(f"{name} has no track of subset(s) {', '.join(wanted)}; "
                         "extract or download fma_metadata.zip again")
    tracks = []
    for track_id, row in df.iterrows():
        where = f"{name}, track {track_id}"
        genre_top, title = row[("track", "genre_top")], row[("track", "title")]
        tracks.append(Track(
            track_id=int(track_id),
            split=_cell(where, row, SPLIT, lambda v: SPLIT_NAMES[v],
                        f"one of {', '.join(SPLIT_NAMES)}"),
            genre_top=genre_top if isinstance(genre_top, str) else None,
            genres_all=_cell(where, row, ("track", "genres_all"), _genre_ids,
                             "a list of genre ids such as [12, 25]"),
            artist_id=_cell(where, row, ("artist", "id"), int, "an integer"),
            album_id=_cell(where, row, ("album", "id"), lambda v: -1 if pd.isna(v) else int(v),
                           "an integer or nothing"),
            title=title if isinstance(title, str) else "",
        ))
    return tracks


def read_genres(fileobj: BinaryIO, name: str = "genres.csv") -> list[dict]:
    """Parses genres.csv into the genre hierarchy: [{id, title, parent, top_level, num_tracks}].

    Raises:
      ValueError: the file is truncated or not CSV, lacks a column, or has a non-integer id or
        count; the message names the file, line and column, and what was expected.
    """
    df = _read_csv(fileobj, name)
    _check_columns(df, GENRE_COLUMNS, name)
    genres = []
    for i, r in df.iterrows():
        where = f"{name}, line {i + 2}"  # after the header line; no field spans lines
        genres.append({
            "id": _cell(where, r, "genre_id", int, "an integer"),
            "title": str(r["title"]),
            "parent": _cell(where, r, "parent", int, "an integer"),
            "top_level": _cell(where, r, "top_level", int, "an integer"),
            "num_tracks": _cell(where, r, "#tracks", int, "an integer"),
        })
    return genres


def _read_csv(fileobj: BinaryIO, name: str, **kwargs) -> pd.DataFrame:
    """`pd.read_csv` of a whole file, after checking that its last row is complete."""
    data = fileobj.read()
    if not data.endswith(b"\n"):
        # The released files end with a line break. Without one the last row was cut off, and
        # pandas would fill its missing cells with NaN rather than fail.
        line = data.count(b"\n") + 1
        raise ValueError(f"{name} is truncated: line {line} ends without a line break; "
                         "extract or download fma_metadata.zip again")
    try:
        return pd.read_csv(io.BytesIO(data), **kwargs)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as e:
        raise ValueError(f"{name} is not a valid CSV file ({e}); "
                         "extract or download fma_metadata.zip again") from e


def _check_columns(df: pd.DataFrame, expected: tuple, name: str) -> None:
    """Raises a ValueError naming the columns of `expected` that `df` lacks, if any."""
    missing = [c for c in expected if c not in df.columns]
    if missing:
        raise ValueError(f"{name} lacks column(s) {', '.join(map(str, missing))}; expected "
                         f"FMA's columns {', '.join(map(str, expected))}")


def _cell(where: str, row: pd.Series, column, parse: Callable, expected: str):
    """`parse(row[column])`, or a ValueError that says where, what was found and what was expected."""
    value = row[column]
    try:
        return parse(value)
    except (ValueError, TypeError, KeyError, SyntaxError) as e:
        raise _bad_value(where, column, value, expected) from e


def _bad_value(where: str, column, value, expected: str) -> ValueError:
    """The error for one bad cell: `where` names the file and the track or line."""
    return ValueError(f"{where}, column {column}: got {value!r}, expected {expected}")


def _genre_ids(text: str) -> tuple[int, ...]:
    """The ids of a list literal such as "[76, 103]", parsed as data: never evaluated as code."""
    ids = ast.literal_eval(text)
    if not isinstance(ids, list) or not all(isinstance(g, int) for g in ids):
        raise ValueError(f"not a list of integers: {text!r}")
    return tuple(ids)
