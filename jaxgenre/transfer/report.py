"""Files a transfer evaluation leaves for people: JSON, one markdown table of every method,
a target-accuracy heatmap, and WAV + log-mel examples to hear and see."""
import json

import librosa
import numpy as np
import soundfile as sf
from etils import epath

from jaxgenre.core import outputs
from jaxgenre.data import audio_files

TABLE_COLUMNS = (  # (key, header, format)
    ("target_accuracy", "target acc.", "{:.3f}"), ("target_probability", "target prob.", "{:.3f}"),
    ("ceiling_accuracy", "ceiling", "{:.3f}"), ("ceiling_balanced_accuracy", "ceiling (bal.)", "{:.3f}"),
    ("chroma_similarity", "chroma sim.", "{:.3f}"), ("onset_f1", "onset F1", "{:.3f}"),
    ("logmel_distance", "log-mel dist. (dB)", "{:.2f}"), ("fd_judge", "FD-judge", "{:.2f}"),
    ("num_pairs", "pairs", "{}"), ("num_clips", "clips", "{}"))


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
    def fmt(spec, value):
        return "-" if value is None else spec.format(value)
    baselines = ("identity", "eq", "random_target")  # least to most style
    order = [m for m in baselines if m in results] + sorted(set(results) - set(baselines))
    lines = ["| method | " + " | ".join(h for _, h, _ in TABLE_COLUMNS) + " |",
             "|---|" + "---|" * len(TABLE_COLUMNS)]
    for method in order:
        r = results[method]
        lines.append(f"| {method} | " + " | ".join(fmt(f, r.get(k)) for k, _, f in TABLE_COLUMNS)
                     + " |")
    any_result = results[order[0]]
    lines.append(f"\nJudge: `{any_result['judge']}` (step {any_result['judge_step']}), split "
                 f"{any_result['split']}, chance {any_result['chance']:.3f}. Content figures compare "
                 "each output with its input; FD-judge compares outputs with real clips of their "
                 "target genres at equal sizes.")
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


def write_examples(examples, method: str, genres, sample_rate: int, out_dir: str) -> list[str]:
    """examples/<track>_input.wav, examples/<method>/<track>_<src>-to-<tgt>.wav and a PNG with
    the input's and the output's log-mels one above the other. An output that would clip is
    scaled down, the gain in its PNG's title."""
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
        with outputs.replacing(root / method / f"{stem}.wav", "wb") as f:
            sf.write(f, output, sample_rate, format="WAV", subtype="PCM_16")
        png = root / method / f"{stem}.png"
        write_before_after(str(png), ex.input, output, sample_rate,
                           (f"input ({genres[ex.source]})", title))
        paths += [str(root / method / f"{stem}.wav"), str(png)]
    return paths
