"""`python -m jaxgenre.evaluate_transfer`: runs `jaxgenre.tools.evaluate_transfer` (its docstring has the
flags)."""
from jaxgenre.core import cli

cli.prepare_process(relaunch=__name__ == "__main__")  # before TensorFlow or JAX loads

from jaxgenre.tools import evaluate_transfer  # noqa: E402

if __name__ == "__main__":
    evaluate_transfer.entry_point()
