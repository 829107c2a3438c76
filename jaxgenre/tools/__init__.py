"""Command-line tools beside training: predict, export, transfer, evaluate_transfer,
import_weights, baselines. Each runs as `python -m jaxgenre.<name>` (a one-line entry point at
the package's top) or `python -m jaxgenre.tools.<name>`."""
