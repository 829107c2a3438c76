r"""ResNet on log-mel spectrograms (ResNet-18 by default; --config.model.name=resnet34/resnet50).

Run:
  python -m jaxgenre.train --config configs/resnet.py:demo --workdir runs/resnet_demo
  python -m jaxgenre.train --config configs/resnet.py --workdir runs/resnet \
      --config.data.manual_dir=$HOME/fma
  python -m jaxgenre.import_weights resnet50 --out ~/weights/resnet50_imagenet \
      --weights ~/.keras/models/resnet50_weights_tf_dim_ordering_tf_kernels_notop.h5
  python -m jaxgenre.train --config configs/resnet.py:imagenet --workdir runs/resnet50_in \
      --config.model.init_from=$HOME/weights/resnet50_imagenet   # fine-tune from ImageNet

Arguments: 'demo', 'multilabel', 'imagenet' (ResNet-50 as Keras's v1 network, the encoder at
0.1x the learning rate).
"""
from jaxgenre.configs import common

from jaxgenre.pretrained import keras_weights


def get_config(arg: str | None = None):
    args = common.parse_args(arg, valid=("demo", "multilabel", "imagenet"))
    c = common.base_config()
    c.model.name = "resnet18"
    c.model.dropout = 0.2
    c.optim.learning_rate = 1e-3
    if "demo" in args:
        common.apply_demo(c)
    if "multilabel" in args:
        common.apply_multilabel(c)
    if "imagenet" in args:
        c.model.name = "resnet50"
        common.apply_imagenet(c, keras_weights.MODEL_KWARGS["resnet50"])
    return c
