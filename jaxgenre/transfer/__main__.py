"""`python -m jaxgenre.transfer`: runs `jaxgenre.tools.transfer` (its docstring has the flags)."""
from jaxgenre.core import cli

cli.prepare_process(relaunch=__name__ == "__main__")  # before TensorFlow or JAX loads

from jaxgenre.tools import transfer  # noqa: E402

if __name__ == "__main__":
    transfer.entry_point()
