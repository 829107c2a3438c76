r"""MobileNetV2 on log-mel spectrograms.

Run:
  python -m jaxgenre.train --config configs/mobilenet.py:demo --workdir runs/mobilenet_demo
  python -m jaxgenre.train --config configs/mobilenet.py --workdir runs/mobilenet \
      --config.data.manual_dir=$HOME/fma   # real fma_small
  python -m jaxgenre.train --config configs/mobilenet.py:demo,multilabel --workdir runs/ml_demo
      # multi-label genres (data.label='genres'): sigmoid head, mAP / ROC-AUC, best by val_map
  python -m jaxgenre.import_weights mobilenet_v2 --out ~/weights/mobilenet_v2_imagenet \
      --weights ~/.keras/models/mobilenet_v2_weights_tf_dim_ordering_tf_kernels_1.0_224_no_top.h5
  python -m jaxgenre.train --config configs/mobilenet.py:imagenet --workdir runs/mobilenet_in \
      --config.model.init_from=$HOME/weights/mobilenet_v2_imagenet   # fine-tune from ImageNet

  python -m jaxgenre.train --config configs/mobilenet.py:demo,student --workdir runs/student \
      --config.distill.teacher_workdir=runs/demo   # a 0.35-width student distilled from a teacher

Arguments: 'demo', 'multilabel' (as do mfcc_cnn, cnn1d, crnn and resnet; elsewhere pass
--config.data.label=genres --config.best_metric=val_map), 'imagenet' (Keras's network, the
encoder at 0.1x the learning rate; set model.width to the imported alpha), 'student' (width 0.35,
for serving; distilled when --config.distill.teacher_workdir names a classifier run, trained
from the labels alone otherwise).

Reaches (see README's table): fma/demo ~90+ % test accuracy in ~5 min on 2 CPU cores.
"""
from jaxgenre.configs import common

from jaxgenre.pretrained import keras_weights


def get_config(arg: str | None = None):
    args = common.parse_args(arg, valid=("demo", "multilabel", "imagenet", "student"))
    c = common.base_config()
    c.model.name = "mobilenet_v2"
    c.model.width = 1.0
    c.model.dropout = 0.2
    if "demo" in args:
        common.apply_demo(c)
    if "multilabel" in args:
        common.apply_multilabel(c)
    if "student" in args:
        c.model.width = 0.35  # a fifth of width 1.0's multiply-adds (59 vs 300 M at 224 x 224)
    if "imagenet" in args:
        common.apply_imagenet(c, keras_weights.MODEL_KWARGS["mobilenet_v2"])
    return c
