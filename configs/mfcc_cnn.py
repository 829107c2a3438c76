r"""A small CNN on MFCCs (20 coefficients of the 128-band log-mel).

Run:
  python -m jaxgenre.train --config configs/mfcc_cnn.py:demo --workdir runs/mfcc_demo
"""
from jaxgenre.configs import common


def get_config(arg: str | None = None):
    args = common.parse_args(arg)
    c = common.base_config()
    c.model.name = "mfcc_cnn"
    c.model.dropout = 0.3
    c.augment.freq_masks = 1
    c.augment.freq_mask_width = 3
    if "demo" in args:
        common.apply_demo(c)
    if "multilabel" in args:
        common.apply_multilabel(c)
    return c
