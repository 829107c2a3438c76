"""The FMA paper's SVM-RBF on MFCC statistics, with the machine it ran on.

  python -m benchmarks.classical_baseline --data_dir DIR [--dataset fma/small]

One row of `python -m jaxgenre.baselines` (which has the other models, FMA's larger feature
set and the JSON report), kept so that the figures in docs/benchmarks.md can be re-run with the
command they name.
"""
import argparse

from benchmarks.common import machine
from jaxgenre.data import input_pipeline
from jaxgenre.tools import baselines


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--data_dir", required=True)
    ap.add_argument("--dataset", default="fma/small")
    a = ap.parse_args()
    try:
        builder = input_pipeline.load_builder(a.dataset, a.data_dir, build=False,
                                                    flag="--dataset")
    except (ValueError, FileNotFoundError) as e:
        raise SystemExit(f"error: {e}") from e
    print(f"machine: {machine()}")
    print(baselines.markdown(baselines.run(builder, "mfcc", ["svm_rbf"])), end="")


if __name__ == "__main__":
    main()
