r"""CRNN: convolutions on the log-mel, a GRU over time.

Run:
  python -m jaxgenre.train --config configs/crnn.py:demo --workdir runs/crnn_demo
"""
from jaxgenre.configs import common


def get_config(arg: str | None = None):
    args = common.parse_args(arg)
    c = common.base_config()
    c.model.name = "crnn"
    c.model.dropout = 0.3
    c.model.n_mels = c.frontend.get_ref("n_mels")  # follows --config.frontend.n_mels
    if "demo" in args:
        common.apply_demo(c)
    if "multilabel" in args:
        common.apply_multilabel(c)
    return c
