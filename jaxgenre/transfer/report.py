"""Files a transfer evaluation leaves for people: JSON, one markdown table of every method,
a target-accuracy heatmap, and WAV + log-mel examples to hear and see."""
import html
import json
import urllib.parse

import librosa
import numpy as np
import soundfile as sf
from etils import epath

from jaxgenre.core import outputs
from jaxgenre.data import audio_files

TABLE_COLUMNS = (  # (key, header, format); a `<key>_se` in a result is shown as +- after it
    ("target_accuracy", "target acc.", "{:.3f}"), ("style_gain", "style gain", "{:.2f}"),
    ("target_probability", "target prob.", "{:.3f}"),
    ("ceiling_accuracy", "ceiling", "{:.3f}"), ("ceiling_balanced_accuracy", "ceiling (bal.)", "{:.3f}"),
    ("chroma_similarity", "chroma sim.", "{:.3f}"), ("onset_f1", "onset F1", "{:.3f}"),
    ("logmel_distance", "log-mel dist. (dB)", "{:.2f}"), ("fd_judge", "FD-judge", "{:.2f}"),
    ("clipped_sample_rate", "clipped", "{:.1e}"), ("edge_burst_db", "edge burst (dB)", "{:.1f}"),
    ("steady_tone_db", "steady tone (dB)", "{:.1f}"),
    ("num_pairs", "pairs", "{}"), ("num_clips", "clips", "{}"))


# The baselines (`methods.BASELINES`) as tables and pages list them: least to most style.
_BASELINES_SHOWN = ("identity", "eq", "random_target")


def _method_order(method: str) -> tuple:
    """Sort key: the baselines first, least to most style, then the other methods by name."""
    shown = _BASELINES_SHOWN
    return (shown.index(method) if method in shown else len(shown), method)


def style_gain(result: dict, eq: dict | None) -> float | None:
    """(target accuracy - eq's) / (ceiling - eq's): 0 is what one EQ curve per genre does, 1
    the judge's accuracy on real clips; comparable across judges of different strength. None
    without eq's result (same judge and settings) or when the ceiling is not above eq."""
    if eq is None or result.get("ceiling_accuracy") is None:
        return None
    room = result["ceiling_accuracy"] - eq["target_accuracy"]
    return (result["target_accuracy"] - eq["target_accuracy"]) / room if room > 0 else None


def _plt():
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    return plt


def write_json(result: dict, out_dir: str, name: str) -> str:
    """`out_dir/<name>.json`; returns its path."""
    path = epath.Path(out_dir) / f"{name}.json"
    outputs.write_text(path, json.dumps(result, indent=2))
    return str(path)


def read_results(out_dir: str, split: str, settings: dict | None = None) -> dict[str, dict]:
    """{method: result} of every `<method>_<split>.json` in `out_dir` (only those evaluated
    with `settings`, the same judge, clips and vocoder, when given)."""
    found = {}
    for path in sorted(epath.Path(out_dir).glob(f"*_{split}.json")):
        result = json.loads(path.read_text())
        if result.get("split") != split or "target_accuracy" not in result:
            continue
        if settings is None or result.get("settings") == settings:
            found[result["method"]] = result
    return found


def markdown_table(results: dict[str, dict]) -> str:
    """One row per method (baselines first), every headline figure."""
    def fmt(spec, value, se=None):
        if value is None:
            return "-"
        return spec.format(value) + ("" if se is None else " ± " + spec.format(se))
    order = sorted(results, key=_method_order)
    lines = ["| method | " + " | ".join(h for _, h, _ in TABLE_COLUMNS) + " |",
             "|---|" + "---|" * len(TABLE_COLUMNS)]
    for method in order:
        r = dict(results[method], style_gain=style_gain(results[method], results.get("eq")))
        lines.append(f"| {method} | " + " | ".join(fmt(f, r.get(k), r.get(f"{k}_se"))
                                                   for k, _, f in TABLE_COLUMNS) + " |")
    any_result = results[order[0]]
    lines.append(f"\nJudge: `{any_result['judge']}` (step {any_result['judge_step']}), split "
                 f"{any_result['split']}, chance {any_result['chance']:.3f}. Content figures compare "
                 "each output with its input; FD-judge compares outputs with real clips of their "
                 "target genres at equal sizes. ± is one standard error with the clip as the unit; "
                 "style gain is (target acc. - eq's) / (ceiling - eq's); clipped is the share of "
                 "output samples at full scale, edge burst the louder first or last 100 ms over "
                 "the clip's median 100 ms, in dB; steady tone the largest loss of a mel band's "
                 "dynamic range (its 10th percentile over frames rising above its 90th), in "
                 "dB.")
    return "\n".join(lines) + "\n"


def write_table(out_dir: str, split: str, settings: dict) -> str:
    """`out_dir/transfer_<split>.md`: every method evaluated there with these `settings`."""
    path = epath.Path(out_dir) / f"transfer_{split}.md"
    outputs.write_text(path, markdown_table(read_results(out_dir, split, settings)))
    return str(path)


def write_heatmap(result: dict, out_dir: str, name: str) -> str:
    """PNG of target accuracy over source (rows) x target (columns)."""
    plt = _plt()
    genres = result["genres"]
    grid = np.full((len(genres), len(genres)), np.nan)
    for pair in result["per_pair"].values():
        grid[genres.index(pair["source"]), genres.index(pair["target"])] = pair["target_accuracy"]
    fig, ax = plt.subplots(figsize=(1.5 + 0.6 * len(genres), 1.2 + 0.6 * len(genres)))
    im = ax.imshow(grid, cmap="viridis", vmin=0.0, vmax=1.0)
    ax.set_xticks(range(len(genres)), genres, rotation=60, ha="right")
    ax.set_yticks(range(len(genres)), genres)
    ax.set_xlabel("target genre")
    ax.set_ylabel("source genre")
    for (i, j), v in np.ndenumerate(grid):
        if not np.isnan(v):
            ax.text(j, i, f"{v:.2f}", ha="center", va="center", fontsize=7,
                    color="black" if v > 0.5 else "white")
    ax.set_title(f"{name}: target accuracy {result['target_accuracy']:.3f}")
    fig.colorbar(im, ax=ax, fraction=0.046)
    fig.tight_layout()
    path = epath.Path(out_dir) / f"{name}_target_accuracy.png"
    with outputs.replacing(path, "wb") as f:
        fig.savefig(f, format="png", dpi=110)
    plt.close(fig)
    return str(path)


def write_before_after(path: str, before: np.ndarray, after: np.ndarray, sample_rate: int,
                       titles: tuple[str, str], n_fft: int = 2048, hop_length: int = 512,
                       n_mels: int = 128, top_db: float = 80.0) -> None:
    """A PNG of two float32 [N] signals' log-mels (dB re 1.0), one above the other."""
    plt = _plt()
    fig, axes = plt.subplots(2, 1, figsize=(10, 6), sharex=True)
    for ax, audio, title in zip(axes, (before, after), titles, strict=True):
        mel = librosa.feature.melspectrogram(y=audio, sr=sample_rate, n_fft=n_fft,
                                             hop_length=hop_length, n_mels=n_mels)
        ax.imshow(librosa.power_to_db(mel, ref=1.0, top_db=top_db), origin="lower",
                  aspect="auto", cmap="magma")
        ax.set_title(title)
        ax.set_ylabel("mel band")
    axes[1].set_xlabel("frame")
    fig.tight_layout()
    with outputs.replacing(path, "wb") as f:
        fig.savefig(f, format="png", dpi=100)
    plt.close(fig)


def write_examples(examples, method: str, genres, sample_rate: int, out_dir: str,
                   split: str, settings: dict | None = None) -> list[str]:
    """examples/<track>_input.wav, examples/<method>/<track>_<src>-to-<tgt>.wav, a PNG with the
    input's and the output's log-mels one above the other, and a JSON of what the listening
    page shows (`write_listening_page`). An output that would clip is scaled down, the gain in
    its PNG's title and its JSON."""
    root = epath.Path(out_dir) / "examples"
    paths = []
    for ex in examples:
        stem = f"{ex.track_id}_{genres[ex.source]}-to-{genres[ex.target]}".replace("/", "_")
        input_wav = root / f"{ex.track_id}_input.wav"
        if not input_wav.exists():
            with outputs.replacing(input_wav, "wb") as f:
                sf.write(f, ex.input, sample_rate, format="WAV", subtype="PCM_16")
        output, gain_db = audio_files.peak_safe(ex.output)
        title = f"{method} -> {genres[ex.target]}" + (f" (gain {gain_db:.1f} dB)" if gain_db else "")
        wav, png = root / method / f"{stem}.wav", root / method / f"{stem}.png"
        with outputs.replacing(wav, "wb") as f:
            sf.write(f, output, sample_rate, format="WAV", subtype="PCM_16")
        write_before_after(str(png), ex.input, output, sample_rate,
                           (f"input ({genres[ex.source]})", title))
        verdict = {g: float(p) for g, p in zip(genres, ex.probabilities)} if (
            ex.probabilities is not None) else None
        sidecar = root / method / f"{stem}.json"
        outputs.write_text(sidecar, json.dumps(
            {"method": method, "split": split, "settings": settings, "track_id": ex.track_id,
             "source": genres[ex.source], "target": genres[ex.target],
             "input_wav": input_wav.name, "wav": f"{method}/{wav.name}",
             "png": f"{method}/{png.name}", "gain_db": gain_db, "verdict": verdict}, indent=2))
        paths += [str(wav), str(png), str(sidecar)]
    return paths


def _link(relative: str) -> str:
    """A file under examples/ as an href: URL-quoted (a '#' or space in a method's name), then
    escaped for the attribute."""
    return html.escape(urllib.parse.quote(f"examples/{relative}"))


def write_listening_page(out_dir: str, split: str, settings: dict | None = None) -> str:
    """`out_dir/transfer_<split>.html`: per example clip, its input and every method's output
    in DIR/examples (each method's JSONs from `write_examples`; with `settings`, only those
    written with the same judge and settings, as the table) as audio players beside their
    log-mel images and the judge's verdict. Links are relative: the page works opened from disk
    and moved with its directory."""
    root = epath.Path(out_dir) / "examples"
    found = [json.loads(p.read_text()) for p in sorted(root.glob("*/*.json"))] if (
        root.exists()) else []
    by_track = {}
    for ex in found:
        if ex["split"] == split and (settings is None or ex.get("settings") == settings):
            by_track.setdefault(ex["track_id"], []).append(ex)
    parts = [f"<!doctype html><html><head><meta charset='utf-8'><title>transfer, {split}</title>"
             "<style>body{font-family:sans-serif}td{vertical-align:top;padding:4px}"
             "img{width:480px}</style></head><body>",
             f"<h1>Style transfer examples, split {html.escape(split)}</h1>",
             "<p>Each clip's input, then every method's output (log-mel: input above, output "
             "below). The verdict is the judge's on the output; the full table is "
             f"<a href='transfer_{split}.md'>transfer_{split}.md</a>.</p>"]
    for track in sorted(by_track):
        rows = sorted(by_track[track], key=lambda ex: (*_method_order(ex["method"]), ex["target"]))
        first = rows[0]
        parts.append(f"<h2>Track {track} ({html.escape(first['source'])})</h2>"
                     f"<p>input <audio controls preload='none' "
                     f"src='{_link(first['input_wav'])}'></audio></p><table>"
                     "<tr><th>method</th><th>to</th><th>output</th><th>log-mel</th>"
                     "<th>judge</th></tr>")
        for ex in rows:
            verdict = ""
            if ex["verdict"]:
                top = sorted(ex["verdict"].items(), key=lambda kv: -kv[1])[:3]
                verdict = ", ".join(f"{html.escape(g)} {p:.2f}" for g, p in top)
            gain = f"<br>scaled {ex['gain_db']:.1f} dB" if ex["gain_db"] else ""
            parts.append(
                f"<tr><td>{html.escape(ex['method'])}</td><td>{html.escape(ex['target'])}</td>"
                f"<td><audio controls preload='none' src='{_link(ex['wav'])}'>"
                f"</audio>{gain}</td><td><img src='{_link(ex['png'])}' "
                f"alt='log-mel'></td><td>{verdict}</td></tr>")
        parts.append("</table>")
    if not by_track:
        parts.append("<p>No examples (evaluate_transfer --examples 0).</p>")
    parts.append("</body></html>")
    path = epath.Path(out_dir) / f"transfer_{split}.html"
    outputs.write_text(path, "\n".join(parts) + "\n")
    return str(path)
