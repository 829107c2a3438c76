"""`python -m jaxgenre.predict`: runs `jaxgenre.tools.predict` (its docstring has the
flags)."""
from jaxgenre.core import cli

cli.prepare_process(relaunch=__name__ == "__main__")  # before TensorFlow or JAX loads

from jaxgenre.tools import predict  # noqa: E402

if __name__ == "__main__":
    predict.entry_point()
