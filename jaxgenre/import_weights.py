"""`python -m jaxgenre.import_weights`: runs `jaxgenre.tools.import_weights` (its docstring has the
flags)."""
from jaxgenre.core import cli

cli.prepare_process(relaunch=__name__ == "__main__")  # before TensorFlow or JAX loads

from jaxgenre.tools import import_weights  # noqa: E402

if __name__ == "__main__":
    import_weights.entry_point()
