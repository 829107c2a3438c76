"""The FMA paper's classical baseline on a built dataset: MFCC statistics + SVM-RBF.

  python benchmarks/classical_baseline.py --data_dir DIR [--dataset fma/small]

Features per clip (as FMA's features.csv): 20 librosa MFCCs of the whole clip, summarised by
mean, std, skew, kurtosis, median, min and max (140 numbers). Standardised, then scikit-learn's
SVC(kernel='rbf') trained on `train`, C chosen on `validation`, accuracy reported on `test`.
"""
import argparse

import librosa
import numpy as np
import scipy.stats
import tensorflow_datasets as tfds
from sklearn.preprocessing import StandardScaler
from sklearn.svm import SVC

import tfds_fma  # noqa: F401  (registers the `fma` dataset with TFDS)
from benchmarks.common import machine


def features(builder, split):
    sr = builder.info.features["audio"].sample_rate
    xs, ys = [], []
    for ex in tfds.as_numpy(builder.as_dataset(split=split)):
        y = ex["audio"][:ex["num_samples"]].astype(np.float32) / 32768
        m = librosa.feature.mfcc(y=y, sr=sr, n_mfcc=20)
        xs.append(np.concatenate([m.mean(1), m.std(1), scipy.stats.skew(m, 1),
                                  scipy.stats.kurtosis(m, 1), np.median(m, 1), m.min(1), m.max(1)]))
        ys.append(ex["label"])
    return np.nan_to_num(np.array(xs)), np.array(ys)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--data_dir", required=True)
    ap.add_argument("--dataset", default="fma/small")
    a = ap.parse_args()
    builder = tfds.builder(a.dataset, data_dir=a.data_dir)
    (xtr, ytr), (xva, yva), (xte, yte) = (features(builder, s) for s in ("train", "validation", "test"))
    scaler = StandardScaler().fit(xtr)
    best = max((SVC(kernel="rbf", C=c).fit(scaler.transform(xtr), ytr).score(scaler.transform(xva), yva), c)
               for c in (0.1, 1, 10, 100))
    svm = SVC(kernel="rbf", C=best[1]).fit(scaler.transform(xtr), ytr)
    print(f"machine: {machine()}")
    print(f"{a.dataset}: {len(ytr)} train / {len(yva)} validation / {len(yte)} test clips")
    print(f"SVM-RBF on MFCC statistics: C={best[1]} (validation {best[0]:.4f}), "
          f"test accuracy {svm.score(scaler.transform(xte), yte):.4f}")


if __name__ == "__main__":
    main()
