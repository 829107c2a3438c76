r"""The FMA paper's classical genre classifiers on a built dataset, as one table.

  python -m jaxgenre.baselines --data_dir DIR [--dataset fma/small]
      [--features mfcc|librosa|musicnn [--musicnn_wheel WHEEL]]
      [--models logistic_regression,knn,naive_bayes,svm_rbf,gradient_boosting]
      [--output_dir DIR] [--workers N]

Features per clip, from the stored audio (the dataset's rate, mono; the padding after
`num_samples` left out), each frame-wise feature summarised over the clip by the 7 statistics of
FMA's features.csv (mean, std, skew, kurtosis, median, min, max):
  mfcc:    20 MFCCs (140 numbers), as `benchmarks/classical_baseline.py` always used.
  librosa: FMA's whole set, computed as its features.py does (518 numbers): chroma_stft,
           chroma_cqt, chroma_cens, tonnetz (6), mfcc (20), rms, zcr, spectral centroid,
           bandwidth, contrast (7) and rolloff. FMA computed them at each MP3's own rate; here
           they come from the dataset's 22,050 Hz (or 16 kHz) audio, so values differ slightly.
  musicnn: the ORIGINAL musicnn graph's (the wheel's TensorFlow 1 graph, MSD weights; not our
           port) 200 penultimate features, mean-pooled over the clip's 3 s patches; 16 kHz
           datasets, --musicnn_wheel. The "frozen pretrained features" reference.
Clips without a single genre (label -1, fma/large) are left out.

Every model sees standardised features (mean and scale of `train`) and is fitted on `train`;
its hyperparameter is the grid value with the best `validation` accuracy (the first on ties),
and the reported accuracy is on `test`. Fit and predict times are those of that final model.

Prints a markdown table; --output_dir also writes it to baselines.md, with every number in
baselines.json.
"""
from jaxgenre.core import cli

# First of all: before TensorFlow starts its threads and loggers. No relaunch: its malloc
# settings are for XLA's step temporaries, and nothing here runs XLA.
cli.prepare_process()

import collections
import dataclasses
import json
import os
import sys
import time
from collections.abc import Callable, Iterable, Iterator

import librosa
import numpy as np
import scipy.stats
import tensorflow_datasets as tfds
from absl import app, flags
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.naive_bayes import GaussianNB
from sklearn.neighbors import KNeighborsClassifier
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.svm import SVC

from jaxgenre.core import outputs
from jaxgenre.data import input_pipeline
from jaxgenre.pretrained import musicnn_original
from tfds_fma.fma import decode

SPLITS = ("train", "validation", "test")


# --------------------------------------------------------------------------------------------
# Features.

def statistics(values: np.ndarray) -> np.ndarray:
    """[7 * F]: values [F, frames] summarised per row as FMA's features.csv does."""
    return np.concatenate([values.mean(1), values.std(1), scipy.stats.skew(values, 1),
                           scipy.stats.kurtosis(values, 1), np.median(values, 1),
                           values.min(1), values.max(1)])


def mfcc_features(y: np.ndarray, sr: int) -> np.ndarray:
    """[140]: statistics of 20 MFCCs (librosa's defaults: 2048-sample frames, hop 512)."""
    return statistics(librosa.feature.mfcc(y=y, sr=sr, n_mfcc=20))


def librosa_features(y: np.ndarray, sr: int) -> np.ndarray:
    """[518]: statistics of FMA's features.csv set, with the parameters of FMA's features.py."""
    cqt = np.abs(librosa.cqt(y, sr=sr, hop_length=512, bins_per_octave=12, n_bins=7 * 12,
                             tuning=None))
    cens = librosa.feature.chroma_cens(C=cqt, n_chroma=12, n_octaves=7)
    stft = np.abs(librosa.stft(y, n_fft=2048, hop_length=512))
    mel = librosa.feature.melspectrogram(sr=sr, S=stft**2)
    return np.concatenate([statistics(f) for f in (
        librosa.feature.chroma_stft(S=stft**2, n_chroma=12),
        librosa.feature.chroma_cqt(C=cqt, n_chroma=12, n_octaves=7),
        cens,
        librosa.feature.tonnetz(chroma=cens),  # FMA's tonnetz is of chroma_cens
        librosa.feature.mfcc(S=librosa.power_to_db(mel), n_mfcc=20),
        librosa.feature.rms(S=stft),
        librosa.feature.zero_crossing_rate(y, frame_length=2048, hop_length=512),
        librosa.feature.spectral_centroid(S=stft, sr=sr),
        librosa.feature.spectral_bandwidth(S=stft, sr=sr),
        librosa.feature.spectral_contrast(S=stft, sr=sr, n_bands=6),
        librosa.feature.spectral_rolloff(S=stft, sr=sr),
    )])


def musicnn_features(wheel: str | None, variant: str = "MSD_musicnn"
                     ) -> Callable[[np.ndarray, int], np.ndarray]:
    """[200]: the ORIGINAL musicnn graph's penultimate features (from the wheel, not our port),
    mean-pooled over the clip's 3 s patches: the "frozen pretrained features" reference."""
    if not wheel:
        raise ValueError("--features musicnn needs --musicnn_wheel: the musicnn wheel (`pip "
                         "download --no-deps musicnn==0.1.0`) or the directory it was unzipped "
                         "into.")
    original = musicnn_original.OriginalMusicnn(wheel, variant)

    def features(y: np.ndarray, sr: int) -> np.ndarray:
        if sr != musicnn_original.SAMPLE_RATE:
            raise ValueError(f"musicnn features need 16 kHz audio, the dataset has {sr} Hz: "
                             "use a *_16k dataset (e.g. --dataset fma/small_16k).")
        return original(musicnn_original.patches(y))["penultimate"].mean(0)
    return features


FEATURES: dict[str, tuple[str, Callable[..., Callable[[np.ndarray, int], np.ndarray]]]] = {
    "mfcc": ("MFCC statistics", lambda wheel: mfcc_features),
    "librosa": ("FMA's librosa feature set", lambda wheel: librosa_features),
    "musicnn": ("the original musicnn (MSD) graph's mean-pooled penultimate features",
                musicnn_features),
}


@dataclasses.dataclass
class Split:
    """x: float32 [N, D] features; y: int [N] labels; track_ids: int [N]."""
    x: np.ndarray
    y: np.ndarray
    track_ids: np.ndarray


def extract(builder: tfds.core.DatasetBuilder, features: str, workers: int | None = None,
            musicnn_wheel: str | None = None) -> dict[str, Split]:
    """Features of every labelled clip of each split, computed on `workers` threads (default
    one per core)."""
    from tqdm import tqdm
    sr = builder.info.features["audio"].sample_rate
    fn = FEATURES[features][1](musicnn_wheel)
    workers = workers or os.cpu_count()

    def clip_features(audio: np.ndarray, num_samples: int, label: int, track_id: int):
        return fn(audio[:num_samples].astype(np.float32) / 32768, sr), label, track_id

    unlabeled = builder.info.metadata.get("unlabeled", {})
    total = sum(builder.info.splits[s].num_examples - unlabeled.get(s, 0) for s in SPLITS)
    out = {}
    with (decode.worker_pool(workers) as pool,
          tqdm(total=total, unit="clip", file=sys.stderr, dynamic_ncols=True) as bar):
        for split in SPLITS:
            # Streamed, a few clips ahead of the threads: fma/small's training audio is 8.5 GB.
            clips = ((ex["audio"], ex["num_samples"], ex["label"], ex["track_id"])
                     for ex in tfds.as_numpy(builder.as_dataset(split=split)) if ex["label"] >= 0)
            rows = []
            for row in _map_ahead(pool, clip_features, clips, 4 * workers):
                rows.append(row)
                bar.update(1)
            xs, labels, track_ids = zip(*rows)
            # Constant rows (silence) have no skew or kurtosis: scipy's NaN becomes 0.
            out[split] = Split(np.nan_to_num(np.array(xs, np.float32)), np.array(labels),
                               np.array(track_ids))
    return out


def _map_ahead(pool, fn, args: Iterable[tuple], ahead: int) -> Iterator:
    """fn(*a) for a in args, in order, with at most `ahead` calls queued."""
    pending = collections.deque()
    for a in args:
        pending.append(pool.submit(fn, *a))
        if len(pending) >= ahead:
            yield pending.popleft().result()
    while pending:
        yield pending.popleft().result()


# --------------------------------------------------------------------------------------------
# Models.

@dataclasses.dataclass(frozen=True)
class Model:
    """A classifier and the grid its one hyperparameter is chosen from (None: nothing to
    choose); `make(value)` builds it, unfitted."""
    label: str
    hyperparameter: str | None
    grid: tuple
    make: Callable


MODELS = {
    "logistic_regression": Model("Logistic regression", "C", (0.01, 0.1, 1.0, 10.0),
                                 lambda c: LogisticRegression(C=c, max_iter=2000)),
    "knn": Model("k-NN", "k", (1, 5, 10, 20, 50, 100, 200),
                 lambda k: KNeighborsClassifier(n_neighbors=k)),
    "naive_bayes": Model("Gaussian naive Bayes", None, (None,), lambda _: GaussianNB()),
    "svm_rbf": Model("SVM-RBF", "C", (0.1, 1.0, 10.0, 100.0), lambda c: SVC(kernel="rbf", C=c)),
    # scikit-learn's histogram boosting: seconds on fma/small, where GradientBoostingClassifier
    # takes many minutes. No early stopping: it would hold out part of `train` by chance.
    "gradient_boosting": Model(
        "Gradient boosting (histogram)", "learning_rate", (0.03, 0.1, 0.3),
        lambda lr: HistGradientBoostingClassifier(learning_rate=lr, early_stopping=False,
                                                  random_state=0)),
}


def parse_models(names: Iterable[str]) -> list[str]:
    """`names` checked against MODELS, in the given order; unknown ones are refused."""
    names = [n.strip() for n in names if n.strip()]
    unknown = [n for n in names if n not in MODELS]
    if unknown or not names:
        raise ValueError(f"Unknown model(s) {', '.join(unknown) or '(none given)'}; valid: "
                         f"{', '.join(MODELS)}.")
    return names


def evaluate_model(name: str, splits: dict[str, Split]) -> dict:
    """Fits MODELS[name] on `train` for each value of its grid, keeps the best on
    `validation` and scores it on `test`: one row of the table."""
    model = MODELS[name]
    train, validation, test = (splits[s] for s in SPLITS)
    # k-NN needs at least k training clips.
    grid = [v for v in model.grid if model.hyperparameter != "k" or v <= len(train.y)]
    best = None  # (validation accuracy, value, fitted pipeline, fit seconds)
    for value in grid:
        start = time.perf_counter()
        fitted = make_pipeline(StandardScaler(), model.make(value)).fit(train.x, train.y)
        seconds = time.perf_counter() - start
        accuracy = fitted.score(validation.x, validation.y)
        if best is None or accuracy > best[0]:
            best = (accuracy, value, fitted, seconds)
    accuracy, value, fitted, fit_seconds = best
    start = time.perf_counter()
    predicted = fitted.predict(test.x)
    predict_seconds = time.perf_counter() - start
    return {"name": name, "model": model.label, "hyperparameter": model.hyperparameter,
            "value": value, "validation_accuracy": float(accuracy),
            "test_accuracy": float(np.mean(predicted == test.y)), "test_clips": len(test.y),
            "test_tracks": len(np.unique(test.track_ids)), "fit_seconds": fit_seconds,
            "predict_seconds": predict_seconds}


# --------------------------------------------------------------------------------------------
# The table.

def run(builder: tfds.core.DatasetBuilder, features: str, models: list[str],
        workers: int | None = None, musicnn_wheel: str | None = None) -> dict:
    """Extracts `features` once, then evaluates each of `models`: the report that `markdown`
    and baselines.json show."""
    start = time.perf_counter()
    splits = extract(builder, features, workers, musicnn_wheel)
    feature_seconds = time.perf_counter() - start
    train, test = splits["train"], splits["test"]
    return {
        "dataset": builder.info.full_name, "data_dir": str(builder.data_dir_root),
        "features": features, "num_features": int(train.x.shape[1]),
        "feature_seconds": feature_seconds, "workers": workers or os.cpu_count(),
        "clips": {s: len(splits[s].y) for s in SPLITS},
        "num_classes": builder.info.features["label"].num_classes,
        "majority_class_test_accuracy": float(np.mean(test.y == np.bincount(train.y).argmax())),
        "models": [evaluate_model(name, splits) for name in models],
    }


def markdown(report: dict) -> str:
    """A sentence on the data and features, then one row per model."""
    clips = report["clips"]
    lines = [
        (f"{report['dataset']} ({report['data_dir']}), {FEATURES[report['features']][0]} "
        f"({report['num_features']} per clip): train {clips['train']} / validation "
        f"{clips['validation']} / test {clips['test']} clips; features extracted in "
        f"{report['feature_seconds']:.1f} s on {report['workers']} threads. Hyperparameter "
        f"chosen on validation, accuracy on test (chance {100 / report['num_classes']:.1f} %, "
        f"majority class {100 * report['majority_class_test_accuracy']:.1f} %)."),
        "",
        ("| model | hyperparameter | validation accuracy | test accuracy | test clips (tracks) "
         "| fit (s) | predict (s) |"),
        "|---|---|---|---|---|---|---|",
    ]
    for m in report["models"]:
        chosen = f"{m['hyperparameter']}={m['value']:g}" if m["hyperparameter"] else "-"
        lines.append(
            f"| {m['model']} | {chosen} | {100 * m['validation_accuracy']:.1f} % | "
            f"{100 * m['test_accuracy']:.1f} % | {m['test_clips']} ({m['test_tracks']}) | "
            f"{m['fit_seconds']:.2f} | {m['predict_seconds']:.3f} |")
    return "\n".join(lines) + "\n"


def write(report: dict, output_dir: str) -> None:
    """baselines.md (the table) and baselines.json (the report) in `output_dir`."""
    outputs.write_text(os.path.join(output_dir, "baselines.md"), markdown(report))
    outputs.write_text(os.path.join(output_dir, "baselines.json"), json.dumps(report, indent=2))


def define_flags() -> None:
    """The command line's flags. Only the command line defines them: the functions above are
    imported beside entry points that define --data_dir too, and absl refuses a flag defined
    twice."""
    flags.DEFINE_string("data_dir", None, "TFDS data dir holding the built dataset.",
                        required=True)
    flags.DEFINE_string("dataset", "fma/small", "A built FMA config, e.g. fma/small.")
    flags.DEFINE_enum("features", "mfcc", list(FEATURES), "mfcc: 20 MFCCs' statistics; "
                      "librosa: FMA's features.csv set (several times slower); musicnn: the "
                      "original musicnn graph's penultimate features (16 kHz datasets).")
    flags.DEFINE_string("musicnn_wheel", None, "For --features musicnn: the musicnn wheel or "
                        "the directory it was unzipped into.")
    flags.DEFINE_list("models", list(MODELS), f"Models to run, of {', '.join(MODELS)}.")
    flags.DEFINE_string("output_dir", None, "Also write baselines.md and baselines.json here.")
    cli.integer_flag("workers", None, "Feature extraction threads (default one per core).",
                     minimum=1)


def main(argv):
    cli.quiet_logs()
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {' '.join(argv[1:])}")
    f = flags.FLAGS
    # Bad input is refused before the features, which take minutes.
    models = parse_models(f.models)
    builder = input_pipeline.load_builder(f.dataset, f.data_dir, build=False, flag="--dataset")
    if f.output_dir:
        outputs.check_writable(f.output_dir, "--output_dir", directory=True)
    report = run(builder, f.features, models, f.workers, f.musicnn_wheel)
    print(markdown(report), end="")
    if f.output_dir:
        write(report, f.output_dir)


def entry_point() -> None:
    """Parses the flags and runs `main` (the `python -m` entry point)."""
    define_flags()
    cli.run(main)


if __name__ == "__main__":
    entry_point()
