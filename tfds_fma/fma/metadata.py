"""FMA metadata as released (mdeff/fma): `tracks.csv` and `genres.csv`.

`tracks.csv` has a two-level column header (e.g. `('set', 'split')`) and one extra header line
naming the index (`track_id`). `('set', 'subset')` holds the smallest subset a track is in
(small < medium < large), and `('set', 'split')` the official artist-filtered split.
"""
import ast
import dataclasses
from typing import BinaryIO

import pandas as pd

SUBSETS = ("small", "medium", "large")
SPLIT_NAMES = {"training": "train", "validation": "validation", "test": "test"}

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


def read_tracks(fileobj: BinaryIO, subset: str) -> list[Track]:
    """Parses tracks.csv and returns the tracks of `subset` (with its smaller subsets), by id."""
    if subset not in SUBSETS:
        raise ValueError(f"Unknown FMA subset {subset!r}; expected one of {SUBSETS}.")
    df = pd.read_csv(fileobj, index_col=0, header=[0, 1], low_memory=False)
    wanted = SUBSETS[: SUBSETS.index(subset) + 1]
    df = df[df[("set", "subset")].isin(wanted)].sort_index()
    tracks = []
    for track_id, row in df.iterrows():
        genre_top = row[("track", "genre_top")]
        album_id = row[("album", "id")]
        title = row[("track", "title")]
        tracks.append(Track(
            track_id=int(track_id),
            split=SPLIT_NAMES[row[("set", "split")]],
            genre_top=genre_top if isinstance(genre_top, str) else None,
            # Python list literals such as "[76, 103]": parsed as data, never evaluated.
            genres_all=tuple(int(g) for g in ast.literal_eval(row[("track", "genres_all")])),
            artist_id=int(row[("artist", "id")]),
            album_id=-1 if pd.isna(album_id) else int(album_id),
            title=title if isinstance(title, str) else "",
        ))
    return tracks


def read_genres(fileobj: BinaryIO) -> list[dict]:
    """Parses genres.csv into the genre hierarchy: [{id, title, parent, top_level, num_tracks}]."""
    df = pd.read_csv(fileobj)
    return [
        {"id": int(r["genre_id"]), "title": str(r["title"]), "parent": int(r["parent"]),
         "top_level": int(r["top_level"]), "num_tracks": int(r["#tracks"])}
        for _, r in df.iterrows()
    ]
