"""`python -m jaxgenre.baselines`: runs `jaxgenre.tools.baselines` (its docstring has the
flags)."""
from jaxgenre.tools import baselines

if __name__ == "__main__":
    baselines.entry_point()
