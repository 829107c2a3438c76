"""Defaults shared by every classifier config; each `configs/<model>.py` starts from these.

Every key is listed here, so a typo in `--config.key=value` is refused (ml_collections locks
the dict) and `jaxgenre.run.config_checks` names the valid keys.
"""
import ml_collections


def base_config() -> ml_collections.ConfigDict:
    c = ml_collections.ConfigDict()
    c.task = "classifier"  # see jaxgenre.tasks
    c.seed = 0
    c.batch_size = 64  # global, over all processes and devices
    c.total_steps = 20_000
    c.log_every_steps = 100
    c.eval_every_steps = 1_000
    c.checkpoint_every_steps = 1_000
    c.keep_best = 3  # best checkpoints by `best_metric`, besides the latest
    c.best_metric = "val_accuracy"  # '<evals name>_<metric>'
    c.best_mode = "max"
    c.eval_batch_size = 32  # clips per evaluation batch (each clip is several crops)

    c.data = ml_collections.ConfigDict()
    c.data.name = "fma/small"
    c.data.data_dir = ml_collections.FieldReference(None, field_type=str)
    c.data.manual_dir = ml_collections.FieldReference(None, field_type=str)
    c.data.crop_seconds = 3.0
    c.data.shuffle_buffer = 512
    c.data.train_split = "train"  # 'train+validation' for a final model on a fixed schedule
    # 'genre_top': one genre per track, FMA's top genre (softmax, accuracy). 'genres': every
    # top-level genre the track's FMA genres belong to, over the same class names (8 in small,
    # 16 in medium and large; see input_pipeline.top_level_classes): a sigmoid per genre, binary
    # cross-entropy, mAP and ROC-AUC. The config argument 'multilabel' sets it with best_metric.
    c.data.label = "genre_top"

    # Run every eval_every_steps by the trainer, and by jaxgenre.evaluate (see jaxgenre.evaluators).
    c.evals = ml_collections.ConfigDict()
    c.evals.val = ml_collections.ConfigDict({"type": "classification", "split": "validation"})

    c.frontend = ml_collections.ConfigDict()
    c.frontend.n_fft = 2048
    c.frontend.hop_length = 512
    c.frontend.n_mels = 128
    c.frontend.fmin = 0.0
    c.frontend.fmax = ml_collections.FieldReference(None, field_type=float)
    c.frontend.top_db = 80.0
    # None: 0 dB at each clip's loudest bin (level-invariant, for classifiers); a power such as
    # 1.0 keeps the level, so the log-mel can be turned back into audio (jaxgenre.audio.vocoder).
    c.frontend.ref = ml_collections.FieldReference(None, field_type=float)
    c.frontend.dft = "fft"  # 'matmul' on TPU
    # 'db' (ref, top_db above) or 'log10_1p': log10(log_gain * mel + 1), musicnn's input
    c.frontend.compress = "db"
    c.frontend.log_gain = 10000.0
    c.frontend.n_mfcc = 20

    c.model = ml_collections.ConfigDict()
    c.model.name = "mobilenet_v2"
    c.model.dtype = "float32"  # compute dtype; 'bfloat16' keeps float32 parameters
    # Fine-tuning: start from `python -m jaxgenre.import_weights` output (head re-initialised
    # when its size differs); freeze_bn trains in inference mode (BatchNorm running statistics
    # used and kept, no dropout).
    c.model.init_from = ml_collections.FieldReference(None, field_type=str)
    c.model.freeze_bn = False

    c.optim = ml_collections.ConfigDict()
    c.optim.name = "adamw"  # or 'sgd' (with momentum)
    c.optim.learning_rate = 1e-3
    c.optim.warmup_steps = 500
    c.optim.weight_decay = 1e-4
    c.optim.momentum = 0.9
    c.optim.grad_clip_norm = 1.0
    c.optim.label_smoothing = 0.1
    c.optim.ema_decay = 0.0  # > 0: evaluate an exponential moving average of the weights
    c.optim.encoder_lr_scale = 1.0  # all but the `dense` head: x the learning rate; 0 freezes it
    c.optim.freeze = ()  # top-level modules never updated (no gradient computed), e.g. ('timbral',)

    c.augment = ml_collections.ConfigDict()
    # uniform random gain in [-gain_db, gain_db] on the waveform; for waveform models and a
    # fixed frontend.ref only (a per-clip reference cancels it)
    c.augment.gain_db = 6.0
    c.augment.time_stretch = 0.0  # time factor in [1/(1+x), 1+x]; 0 disables
    c.augment.freq_shift = 0.0  # mel bands, uniform in [-x, x]; 0 disables
    c.augment.freq_masks = 2
    c.augment.freq_mask_width = 16
    c.augment.time_masks = 2
    c.augment.time_mask_width = 20
    c.augment.mixup_alpha = 0.2  # 0 disables mixup

    # Knowledge distillation (Hinton et al. 2015): with a teacher (any classifier run on the same
    # genres, sample rate and crop; its own frontend and model), the loss is
    # (1 - weight) x cross-entropy to the labels + weight x T^2 x cross-entropy to the teacher's
    # probabilities at temperature T (softmax; multi-label: a sigmoid per genre), the teacher's
    # averaged weights run inside the same jitted step on the same crops, mixed up alike.
    c.distill = ml_collections.ConfigDict()
    c.distill.teacher_workdir = ml_collections.FieldReference(None, field_type=str)
    c.distill.teacher_checkpoint = "best"  # 'best', 'latest' or a step
    c.distill.temperature = 4.0
    c.distill.weight = 0.5
    return c


def apply_demo(c: ml_collections.ConfigDict) -> None:
    """Shrinks a config to train on the synthetic `fma/demo` on a laptop CPU in minutes."""
    c.data.name = "fma/demo"
    c.batch_size = 32
    c.total_steps = 300
    c.log_every_steps = 25
    c.eval_every_steps = 100
    c.checkpoint_every_steps = 100
    c.optim.warmup_steps = 30
    c.optim.learning_rate = 2e-3
    c.eval_batch_size = 16


def apply_multilabel(c: ml_collections.ConfigDict) -> None:
    """Multi-label genres (data.label 'genres'), checkpoints kept by validation mAP."""
    c.data.label = "genres"
    c.best_metric = "val_map"
    c.best_mode = "max"


def parse_args(arg: str | None, valid: tuple[str, ...] = ("demo", "multilabel")) -> set[str]:
    """'demo,probe' -> {'demo', 'probe'}; words not in `valid` are refused."""
    words = {w for w in (arg or "").split(",") if w}
    unknown = words - set(valid)
    if unknown:
        raise ValueError(f"Unknown config argument(s) {sorted(unknown)}; valid: "
                         f"{', '.join(valid)}.")
    return words


def apply_imagenet(c: ml_collections.ConfigDict, keras_kwargs: dict) -> None:
    """Fine-tuning from Keras's ImageNet weights (`python -m jaxgenre.import_weights
    mobilenet_v2|resnet50 --weights FILE.h5 --out DIR`, then --config.model.init_from=DIR):
    the model built as Keras's network (`keras_weights.MODEL_KWARGS`, which the import checks),
    the encoder at a tenth of the head's learning rate. Without init_from the same network
    trains from scratch."""
    c.model.update(keras_kwargs)
    c.optim.encoder_lr_scale = 0.1
