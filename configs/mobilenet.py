r"""MobileNetV2 on log-mel spectrograms.

Run:
  python -m jaxgenre.train --config configs/mobilenet.py:demo --workdir runs/mobilenet_demo
  python -m jaxgenre.train --config configs/mobilenet.py --workdir runs/mobilenet \
      --config.data.manual_dir=$HOME/fma   # real fma_small
  python -m jaxgenre.train --config configs/mobilenet.py:demo,multilabel --workdir runs/ml_demo
      # multi-label genres (data.label='genres'): sigmoid head, mAP / ROC-AUC, best by val_map

Arguments: 'demo', 'multilabel' (as do mfcc_cnn, cnn1d, crnn and resnet; elsewhere pass
--config.data.label=genres --config.best_metric=val_map).

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
    if "multilabel" in args:
        common.apply_multilabel(c)
    return c
