"""`python -m jaxgenre.serve`: runs `jaxgenre.tools.serve` (its docstring has the flags)."""
from jaxgenre.core import cli

cli.prepare_process(relaunch=__name__ == "__main__")  # before TensorFlow or JAX loads

from jaxgenre.tools import serve  # noqa: E402

if __name__ == "__main__":
    serve.entry_point()
