r"""Raw-audio CNNs: the original project's 1D CNN baseline, or SampleCNN.

Run:
  python -m jaxgenre.train --config configs/cnn1d.py:demo --workdir runs/cnn1d_demo
  python -m jaxgenre.train --config configs/cnn1d.py --workdir runs/cnn1d \
      --config.model.name=sample_cnn --config.data.manual_dir=$HOME/fma
"""
from jaxgenre.configs import common


def get_config(arg: str | None = None):
    args = common.parse_args(arg)
    c = common.base_config()
    c.model.name = "cnn1d"
    c.model.dropout = 0.5
    c.augment.mixup_alpha = 0.0  # SpecAugment does not apply to waveforms; gain does
    if "demo" in args:
        common.apply_demo(c)
    if "multilabel" in args:
        common.apply_multilabel(c)
    return c
