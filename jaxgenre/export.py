"""`python -m jaxgenre.export`: runs `jaxgenre.tools.export` (its docstring has the
flags)."""
from jaxgenre.core import cli

cli.prepare_process(relaunch=__name__ == "__main__")  # before TensorFlow or JAX loads

from jaxgenre.tools import export  # noqa: E402

if __name__ == "__main__":
    export.entry_point()
