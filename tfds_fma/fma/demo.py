"""A synthetic FMA release for demos and tests: MP3s and metadata in the real layout.

`generate(out_dir)` writes `fma_metadata.zip` and `fma_small.zip` (BZIP2 members, one top folder
each, `NNN/NNNNNN.mp3`) exactly as FMA ships them, so the `demo` config is built by the same code
as `small`. Eight styles named after the fma_small genres differ in tempo, rhythm, timbre,
harmony and texture; every clip draws its own key, tempo, melody, mix, encoding rate, channel
count and noise, so no single spectral feature separates the classes.

`write_release` is the layout writer on its own; tests use it to add broken files.
"""
import csv
import io
import os
import zipfile

import numpy as np
import soundfile as sf

from tfds_fma.fma import decode

# The 52 columns of tracks.csv in file order (level 0, level 1), as in the real release.
TRACKS_COLUMNS = (
    [("album", c) for c in (
        "comments date_created date_released engineer favorites id information listens "
        "producer tags title tracks type").split()]
    + [("artist", c) for c in (
        "active_year_begin active_year_end associated_labels bio comments date_created "
        "favorites id latitude location longitude members name related_projects tags website "
        "wikipedia_page").split()]
    + [("set", "split"), ("set", "subset")]
    + [("track", c) for c in (
        "bit_rate comments composer date_created date_recorded duration favorites genre_top "
        "genres genres_all information interest language_code license listens lyricist number "
        "publisher tags title").split()]
)
GENRE_IDS = {"Electronic": 15, "Experimental": 38, "Folk": 17, "Hip-Hop": 21,
             "Instrumental": 1235, "International": 2, "Pop": 10, "Rock": 12}
SPLITS = ("training", "validation", "test")


def write_release(out_dir: str, tracks: list[dict], audio: dict[int, bytes],
                  zipped: bool = True, subset: str = "small") -> None:
    """Writes an FMA-layout release.

    Args:
      out_dir: where `fma_metadata[.zip]` and `fma_<subset>[.zip]` go.
      tracks: rows with keys track_id, genre (a key of GENRE_IDS, or None), split (training |
        validation | test), artist_id, title, and optionally subset.
      audio: track_id -> file bytes (MP3, or anything, to model broken files).
      zipped: write BZIP2 zips as released, else the extracted folders.
    """
    files = {"fma_metadata/tracks.csv": _tracks_csv(tracks, subset).encode(),
             "fma_metadata/genres.csv": _genres_csv().encode()}
    for track_id, data in audio.items():
        tid = f"{track_id:06d}"
        files[f"fma_{subset}/{tid[:3]}/{tid}.mp3"] = data
    os.makedirs(out_dir, exist_ok=True)
    for top in ("fma_metadata", f"fma_{subset}"):
        members = sorted(m for m in files if m.startswith(top + "/"))
        if zipped:
            with zipfile.ZipFile(os.path.join(out_dir, top + ".zip"), "w",
                                 compression=zipfile.ZIP_BZIP2) as z:
                for m in members:
                    z.writestr(m, files[m])
        else:
            for m in members:
                os.makedirs(os.path.dirname(os.path.join(out_dir, m)), exist_ok=True)
                with open(os.path.join(out_dir, m), "wb") as f:
                    f.write(files[m])


def _tracks_csv(tracks: list[dict], subset: str) -> str:
    out = io.StringIO()
    w = csv.writer(out)
    w.writerow([""] + [c[0] for c in TRACKS_COLUMNS])
    w.writerow([""] + [c[1] for c in TRACKS_COLUMNS])
    w.writerow(["track_id"] + [""] * len(TRACKS_COLUMNS))
    for t in sorted(tracks, key=lambda t: t["track_id"]):
        genres = [GENRE_IDS[t["genre"]]] if t["genre"] else [1, 38]
        row = dict.fromkeys(TRACKS_COLUMNS, "")
        row.update({
            ("album", "id"): t["artist_id"], ("album", "title"): f"Album {t['artist_id']}",
            ("album", "tags"): "[]", ("album", "type"): "Album",
            ("artist", "id"): t["artist_id"], ("artist", "name"): f"Artist {t['artist_id']}",
            ("artist", "tags"): "[]",
            ("set", "split"): t["split"], ("set", "subset"): t.get("subset", subset),
            ("track", "genre_top"): t["genre"] or "", ("track", "genres"): str(genres),
            ("track", "genres_all"): str(genres), ("track", "tags"): "[]",
            ("track", "title"): t["title"], ("track", "license"): "synthetic",
        })
        w.writerow([t["track_id"]] + [row[c] for c in TRACKS_COLUMNS])
    return out.getvalue()


def _genres_csv() -> str:
    rows = ["genre_id,#tracks,parent,title,top_level"]
    rows += [f"{gid},0,0,{name},{gid}" for name, gid in sorted(GENRE_IDS.items(), key=lambda x: x[1])]
    rows.append("1,0,38,Avant-Garde,38")
    return "\n".join(rows) + "\n"


# --------------------------------------------------------------------------------------------
# Synthesis. Each style is a recipe of tempo range, scale, timbre and rhythm; the draws inside
# each recipe overlap between styles (tempos, keys, loudness), so a model must learn patterns.

_SCALES = {"major": [0, 2, 4, 5, 7, 9, 11], "minor": [0, 2, 3, 5, 7, 8, 10],
           "pentatonic": [0, 3, 5, 7, 10], "hijaz": [0, 1, 4, 5, 7, 8, 10],
           "chromatic": list(range(12))}
_STYLES = {
    #               tempo       scale         harmonics decay  notes/beat drums      extras
    "Electronic":   ((118, 135), "minor",      "saw",    0.15, 4, "four_floor", {"bass": 1}),
    "Experimental": ((60, 160),  "chromatic",  "inharm", 0.6,  1, None,         {"noise": 1}),
    "Folk":         ((85, 115),  "major",      "pluck",  0.5,  2, None,         {}),
    "Hip-Hop":      ((80, 96),   "pentatonic", "sine",   0.3,  1, "boom_bap",   {"bass": 1}),
    "Instrumental": ((60, 84),   "major",      "sine",   1.5,  1, None,         {"pad": 1}),
    "International": ((96, 130), "hijaz",      "reed",   0.4,  2, "hand",       {"drone": 1}),
    "Pop":          ((98, 126),  "major",      "square", 0.35, 2, "backbeat",   {"chords": 1}),
    "Rock":         ((110, 150), "minor",      "saw",    0.3,  2, "backbeat",   {"drive": 1}),
}
GENRES = tuple(_STYLES)


def _harmonics(kind: str, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """(frequency ratios, amplitudes) of one instrument."""
    n = np.arange(1, 9)
    if kind == "saw":
        return n, 1 / n
    if kind == "square":
        return n, np.where(n % 2 == 1, 1 / n, 0.0)
    if kind == "pluck":
        return n, 1 / n**2
    if kind == "reed":
        return n, np.where(n % 2 == 1, 1.0, 0.4) / n
    if kind == "inharm":
        return n * (1 + rng.uniform(0.02, 0.2) * n), rng.uniform(0.2, 1, 8) / n
    return n[:2], np.array([1.0, 0.1])


def _note(freq, dur, sr, ratios, amps, decay, attack, rng):
    t = np.arange(int(dur * sr)) / sr
    keep = freq * ratios < sr / 2
    phase = rng.uniform(0, 2 * np.pi, keep.sum())
    wave = (amps[keep, None] * np.sin(2 * np.pi * freq * ratios[keep, None] * t + phase[:, None])).sum(0)
    env = np.minimum(t / attack, 1.0) * np.exp(-t / decay)
    return wave * env / max(amps.sum(), 1e-6)


def _add(track, sig, start):
    end = min(len(track), start + len(sig))
    if start < end:
        track[start:end] += sig[: end - start]


def _drums(pattern, beat, seconds, sr, rng):
    out = np.zeros(int(seconds * sr))
    t = np.arange(int(0.25 * sr)) / sr
    kick = np.sin(2 * np.pi * (50 + 100 * np.exp(-t * 30)) * t) * np.exp(-t * 12)
    snare = rng.standard_normal(len(t)) * np.exp(-t * 25) * 0.6
    hat = np.diff(rng.standard_normal(len(t) + 1)) * np.exp(-t * 80) * 0.25
    tom = np.sin(2 * np.pi * rng.uniform(150, 260) * t) * np.exp(-t * 15)
    hits = {  # (instrument, positions in beats within a 4-beat bar)
        "four_floor": [(kick, [0, 1, 2, 3]), (hat, [0.5, 1.5, 2.5, 3.5])],
        "boom_bap": [(kick, [0, 1.5, 2.75]), (snare, [1, 3]), (hat, [0, 0.6, 1, 1.6, 2, 2.6, 3, 3.6])],
        "backbeat": [(kick, [0, 2, 2.5]), (snare, [1, 3]), (hat, list(np.arange(8) / 2))],
        "hand": [(tom, [0, 0.75, 1.5, 2, 2.5, 3.25]), (hat * 2, [1, 3])],
    }[pattern]
    for bar in np.arange(0, seconds / beat, 4):
        for sound, positions in hits:
            for p in positions:
                _add(out, sound * rng.uniform(0.6, 1.0), int((bar + p) * beat * sr))
    return out


def synthesize(genre: str, seconds: float, sr: int, rng: np.random.Generator) -> np.ndarray:
    """One clip of `genre` as float32 in [-1, 1], shape [seconds * sr]."""
    tempo, scale, timbre, decay, density, drums, extras = _STYLES[genre]
    beat = 60 / rng.uniform(*tempo)
    root = 110 * 2 ** (rng.integers(0, 12) / 12)
    steps = np.array(_SCALES[scale])
    ratios, amps = _harmonics(timbre, rng)
    out = np.zeros(int(seconds * sr))

    def pitch_of(degree, octave):
        semitones = steps[degree % len(steps)] + 12 * (degree // len(steps))
        return root * 2 ** (octave + semitones / 12)

    # Melody: a random walk on the scale; experimental onsets are irregular.
    t, degree = 0.0, int(rng.integers(0, len(steps)))
    while t < seconds:
        dur = rng.exponential(beat) if genre == "Experimental" else beat / density
        degree = int(np.clip(degree + rng.integers(-2, 3), -3, 2 * len(steps)))
        _add(out, 0.5 * _note(pitch_of(degree, 1), dur * 1.5, sr, ratios, amps, decay * beat * 2,
                              0.005 if timbre in ("pluck", "saw") else 0.03, rng), int(t * sr))
        t += dur
    if extras.get("chords") or extras.get("pad"):
        for i, start in enumerate(np.arange(0, seconds, 4 * beat)):
            chord_root = [0, 4, 5, 3][i % 4]
            for d in (0, 2, 4):
                _add(out, 0.25 * _note(pitch_of(chord_root + d, 0), 4 * beat, sr, *_harmonics("sine", rng),
                                       decay * 8, 0.3 if extras.get("pad") else 0.01, rng), int(start * sr))
    if extras.get("bass"):
        for start in np.arange(0, seconds, beat if genre == "Electronic" else 2 * beat):
            bass = _harmonics("saw" if genre == "Electronic" else "sine", rng)
            pitch = root / 2 * 2 ** (steps[rng.integers(0, 3)] / 12)
            _add(out, 0.6 * _note(pitch, beat, sr, *bass, 0.3, 0.005, rng), int(start * sr))
    if extras.get("drone"):
        out += 0.15 * _note(root / 2, seconds, sr, *_harmonics("reed", rng), 1e3, 0.5, rng)[: len(out)]
    if extras.get("noise"):
        for start in rng.uniform(0, seconds, 6):
            burst = rng.standard_normal(int(rng.uniform(0.05, 0.6) * sr)) * 0.2
            _add(out, burst * np.hanning(len(burst)), int(start * sr))
    if drums and rng.random() > 0.1:
        out += rng.uniform(0.4, 0.9) * _drums(drums, beat, seconds, sr, rng)
    if extras.get("drive"):
        out = np.tanh(3 * out)
    out += rng.uniform(0.002, 0.03) * rng.standard_normal(len(out))
    out *= 10 ** (rng.uniform(-12, 0) / 20) / max(np.abs(out).max(), 1e-6)
    return out.astype(np.float32)


def encode_mp3(audio: np.ndarray, sr: int) -> bytes:
    """MP3 bytes of float audio, shape [n] or [n, channels] (libsndfile's LAME encoder)."""
    buf = io.BytesIO()
    sf.write(buf, audio, sr, format="MP3")
    return buf.getvalue()


def _one_clip(args):
    genre, seconds, seed = args
    rng = np.random.default_rng(seed)
    sr = int(rng.choice([22050, 32000, 44100, 48000]))
    audio = synthesize(genre, seconds, sr, rng)
    if rng.random() < 0.5:  # FMA mixes stereo and mono encodes
        audio = np.stack([audio, np.roll(audio, int(rng.integers(1, 200)))], axis=1)
    return encode_mp3(audio, sr)


def generate(out_dir: str, tracks_per_genre: int = 50, tracks_per_artist: int = 5,
             seconds: float = 10.0, seed: int = 0, workers: int | None = None) -> None:
    """Writes a synthetic fma_small-layout release of `8 * tracks_per_genre` clips to `out_dir`.

    Splits are by artist (as in FMA): of each genre's artists, 80 % train, 10 % each
    validation and test (at least one artist each).
    """
    rng = np.random.default_rng(seed)
    ids = rng.choice(np.arange(2, 155_000), size=len(GENRES) * tracks_per_genre, replace=False)
    tracks, jobs = [], []
    artists_per_genre = -(-tracks_per_genre // tracks_per_artist)
    n_eval = max(1, round(0.1 * artists_per_genre))
    for g, genre in enumerate(GENRES):
        for i in range(tracks_per_genre):
            artist = i // tracks_per_artist
            split = "test" if artist < n_eval else "validation" if artist < 2 * n_eval else "training"
            track_id = int(ids[g * tracks_per_genre + i])
            tracks.append({"track_id": track_id, "genre": genre, "split": split,
                           "artist_id": 1000 * (g + 1) + artist, "title": f"{genre} {i}"})
            jobs.append((genre, seconds, (seed, g, i)))
    with decode.worker_pool(workers) as pool:
        encoded = list(pool.map(_one_clip, jobs))
    write_release(out_dir, tracks, {t["track_id"]: e for t, e in zip(tracks, encoded)})
