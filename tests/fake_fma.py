"""A small fake FMA release in the real layout, with the kinds of breakage the real one has."""
import numpy as np

from tfds_fma.fma import demo

# (split, genre, source rate, channels) of the good clips; 3 per split per class would be too
# slow, so the mix below covers every rate and channel count instead.
GOOD = [
    ("training", "Rock", 44100, 2), ("training", "Pop", 48000, 1), ("training", "Folk", 32000, 2),
    ("training", "Electronic", 44100, 1), ("training", "Hip-Hop", 22050, 2),
    ("validation", "Experimental", 48000, 2), ("validation", "Instrumental", 32000, 1),
    ("test", "International", 44100, 2), ("test", "Rock", 32000, 1),
]
BROKEN = {"empty": ("training", "Pop"), "truncated": ("training", "Rock"),
          "short": ("test", "Folk"), "missing": ("validation", "Folk")}
SPLITS = {"train": 5, "validation": 2, "test": 2}  # good clips per split
SECONDS = 6.0


def make(out_dir: str, zipped: bool) -> dict:
    """Writes the release; returns {track_id: kind} of the broken tracks."""
    rng = np.random.default_rng(7)
    tracks, audio, broken = [], {}, {}
    for i, (split, genre, sr, channels) in enumerate(GOOD):
        track_id = 100 + i * 1013  # spreads ids over several NNN folders
        x = demo.synthesize(genre, SECONDS, sr, rng)
        audio[track_id] = demo.encode_mp3(x if channels == 1 else np.stack([x, x[::-1]], 1), sr)
        tracks.append({"track_id": track_id, "genre": genre, "split": split,
                       "artist_id": 10 + i, "title": f"clip {i}"})
    good_mp3 = audio[100]
    for j, (kind, (split, genre)) in enumerate(BROKEN.items()):
        track_id = 99000 + j
        broken[track_id] = kind
        tracks.append({"track_id": track_id, "genre": genre, "split": split,
                       "artist_id": 90 + j, "title": kind})
        if kind == "empty":
            audio[track_id] = b""
        elif kind == "truncated":
            audio[track_id] = good_mp3[:1752]
        elif kind == "short":
            audio[track_id] = demo.encode_mp3(demo.synthesize(genre, 1.5, 44100, rng), 44100)
    # A medium-only track must not appear in the small subset.
    tracks.append({"track_id": 150000, "genre": "Rock", "split": "training", "artist_id": 99,
                   "title": "medium only", "subset": "medium"})
    demo.write_release(out_dir, tracks, audio, zipped=zipped)
    return broken
