r"""ResNet on log-mel spectrograms (ResNet-18 by default; --config.model.name=resnet34/resnet50).

Run:
  python -m jaxgenre.train --config configs/resnet.py:demo --workdir runs/resnet_demo
  python -m jaxgenre.train --config configs/resnet.py --workdir runs/resnet \
      --config.data.manual_dir=$HOME/fma
"""
from jaxgenre.configs import common


def get_config(arg: str | None = None):
    args = common.parse_args(arg)
    c = common.base_config()
    c.model.name = "resnet18"
    c.model.dropout = 0.2
    c.optim.learning_rate = 1e-3
    if "demo" in args:
        common.apply_demo(c)
    if "multilabel" in args:
        common.apply_multilabel(c)
    return c
