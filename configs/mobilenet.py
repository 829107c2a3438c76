r"""MobileNetV2 on log-mel spectrograms.

Run:
  python -m jaxgenre.train --config configs/mobilenet.py:demo --workdir runs/mobilenet_demo
  python -m jaxgenre.train --config configs/mobilenet.py --workdir runs/mobilenet \
      --config.data.manual_dir=$HOME/fma   # real fma_small

Reaches (see README's table): fma/demo ~90+ % test accuracy in ~5 min on 2 CPU cores.
"""
from jaxgenre.configs import common


def get_config(arg: str | None = None):
    args = common.parse_args(arg)
    c = common.base_config()
    c.model.name = "mobilenet_v2"
    c.model.width = 1.0
    c.model.dropout = 0.2
    if "demo" in args:
        common.apply_demo(c)
    return c
