"""`python -m jaxgenre.sweep`: runs `jaxgenre.tools.sweep` (its docstring has the flags)."""
from jaxgenre.core import cli

cli.prepare_process(relaunch=__name__ == "__main__")  # before TensorFlow or JAX loads

from jaxgenre.tools import sweep  # noqa: E402

if __name__ == "__main__":
    sweep.entry_point()
