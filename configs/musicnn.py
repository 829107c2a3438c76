r"""musicnn (Pons & Serra 2019) fine-tuned from its published weights, on 16 kHz audio.

Get the weights (once; no download at run time):
  pip download --no-deps musicnn==0.1.0 -d ~/wheels   # --no-deps: its pins (numpy<1.17,
                                                       # tensorflow 1.x) do not install today
  python -m jaxgenre.import_weights musicnn --wheel ~/wheels/musicnn-0.1.0-py3-none-any.whl \
      --variant MSD_musicnn --out ~/weights/msd_musicnn
Run:
  python -m jaxgenre.train --config configs/musicnn.py --workdir runs/musicnn \
      --config.model.init_from=$HOME/weights/msd_musicnn --config.data.manual_dir=$HOME/fma
  ... --config configs/musicnn.py:probe   # linear probe: encoder frozen, inference mode
  ... --config configs/musicnn.py:demo    # fma/demo_16k, on a laptop CPU in minutes

Arguments: 'probe' (only the head trains; BatchNorm statistics and dropout in inference mode),
'demo', 'multilabel' (FMA's multi-label genres, sigmoid head). Without init_from the same
network trains from scratch. Its input is musicnn's own: 16 kHz, 96 mel bands, n_fft 512,
hop 256, log10(10000 x + 1); the trainer refuses imported weights with another frontend or a
22 kHz dataset.
"""
from jaxgenre.configs import common


def get_config(arg: str | None = None):
    args = common.parse_args(arg, valid=("demo", "probe", "multilabel"))
    c = common.base_config()
    c.data.name = "fma/small_16k"
    c.data.crop_seconds = 3.0  # musicnn's training patches (187 frames)
    c.frontend.n_fft = 512
    c.frontend.hop_length = 256
    c.frontend.n_mels = 96
    c.frontend.compress = "log10_1p"
    c.model.name = "musicnn"
    c.model.n_mels = c.frontend.get_ref("n_mels")  # its timbral kernels span 40 % / 70 % of them
    c.model.dropout = 0.5
    # The head's learning rate; the pretrained encoder moves 10x slower. Chosen on the dev set's
    # validation split (59 clips), with augmentation off: fine-tune 52.5 % vs 47.5 % for lr 1e-3
    # with SpecAugment and mixup, probe 55.9 % vs 25.4 % (docs/benchmarks.md).
    c.optim.learning_rate = 1e-2
    c.optim.encoder_lr_scale = 0.1
    # The front-end's wide 1-channel convolutions keep their Million Song Dataset weights (their
    # BatchNorm statistics still adapt to the new data): on XLA:CPU their kernel gradients cost
    # 16x the whole forward pass (a step of 32 clips: 23 s with them, 1.4 s without). On a GPU
    # or TPU, `--config.optim.freeze="()"` trains all of it.
    c.optim.freeze = ("input_bn", "timbral", "temporal")
    c.optim.warmup_steps = 100
    c.augment.gain_db = 6.0  # log10(10000 x + 1) keeps the level, so a gain is heard
    c.augment.freq_masks = c.augment.time_masks = 0  # see the learning rate above
    c.augment.mixup_alpha = 0.0
    if "probe" in args:
        c.optim.encoder_lr_scale = 0.0
        c.model.freeze_bn = True
    if "demo" in args:
        common.apply_demo(c)
        c.data.name = "fma/demo_16k"
    if "multilabel" in args:  # musicnn's own head was multi-label: 50 sigmoid tags
        common.apply_multilabel(c)
    return c
