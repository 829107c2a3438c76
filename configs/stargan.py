r"""Adversarial genre style transfer: one generator for every genre (StarGAN style), a
multi-task spectral-norm discriminator, hinge loss with R1, cycle and identity L1, and
optionally a frozen genre classifier pushing toward the target genre.

Run (see README, "Style transfer"):
  # a classifier for the loss, with this config's frontend (128 mel bands, as the judge's)
  python -m jaxgenre.train --config configs/mfcc_cnn.py:demo --workdir runs/gan_classifier
  python -m jaxgenre.train --config configs/stargan.py:demo --workdir runs/stargan_demo \
      --config.gan.classifier_workdir=runs/gan_classifier

  # real music on a CPU (docs/results_style_transfer.md): a loss classifier and a validation
  # classifier of another family, both trained on the same data with this frontend
  python -m jaxgenre.train --config configs/stargan.py:realmusic --workdir runs/stargan_real \
      --config.data.data_dir=DATA --config.gan.classifier_workdir=runs/mfcc_cnn_small \
      --config.evals.val.classifier_workdir=runs/crnn_small

Config arguments: demo (fma/demo on a CPU), realmusic (the demo's sizes on fma/small with the
real-music recipe), and one of hinge | nonsaturating | wgan_gp to pick the adversarial loss
(wgan_gp also sets n_critic 5 and no R1, as Gulrajani et al.).
"""
import ml_collections
from jaxgenre.configs import common

LOSSES = ("hinge", "nonsaturating", "wgan_gp")


def get_config(arg: str | None = None):
    words = {w for w in (arg or "").split(",") if w}
    unknown = words - {"demo", "realmusic", *LOSSES}
    if unknown:
        raise ValueError(f"Unknown config argument(s) {sorted(unknown)}; valid: demo, realmusic, "
                         f"{', '.join(LOSSES)}.")
    if {"demo", "realmusic"} <= words:
        raise ValueError("Pass demo or realmusic, not both: realmusic has the demo's sizes.")
    if "realmusic" not in words:
        return style_transfer_config("stargan", words)
    c = style_transfer_config("stargan", words | {"demo"})
    # The recipe chosen on the real-music dev set's validation split over several seeds (issue
    # 29): D sees a few hundred clips, so DiffAugment; rhythm kept by the onset term; the eq
    # prior hands G most of an equaliser's change, at 0.65 rather than 1, and the harmony term
    # at 4 keeps harmony with a margin in every seed. Its style over eq varies with the seed and
    # the checkpoint, so 4,000 steps with constant rates let the trainer choose among eight
    # (docs/results_style_transfer.md).
    c.data.name = "fma/small"
    c.total_steps = 4000  # 22-24 min on 2 CPU cores (AMD EPYC), evaluations included
    c.eval_every_steps = c.checkpoint_every_steps = 500
    c.gan.diff_augment = "roll,cutout,gain"
    c.gan.onset_weight = 4.0
    c.model.eq_prior = 0.65
    c.gan.chroma_weight = 4.0
    return c


def style_transfer_config(task: str, words: set[str]) -> ml_collections.ConfigDict:
    """The shared base of configs/stargan.py and configs/autoencoder.py."""
    c = common.base_config()
    c.task = task
    del c.optim, c.augment, c.distill  # the classifier's; the GAN's own settings: c.gan
    c.frontend.ref = 1.0  # fixed reference: the level survives the round trip to audio

    c.model = ml_collections.ConfigDict({
        "name": "stargan_generator", "dtype": "float32", "channels": 32, "encoder_blocks": 2,
        "decoder_blocks": 4, "style_dim": 64, "skip": True,
        # > 0: G first moves the input's long-term spectrum that far toward the target genre's
        # mean (1: the eq baseline, which the network then refines; models.stargan.Generator).
        "eq_prior": 0.0})
    c.discriminator = ml_collections.ConfigDict({
        "name": "stargan_discriminator", "dtype": "float32", "channels": 32, "num_layers": 4})

    c.gan = ml_collections.ConfigDict()
    c.gan.loss = "hinge"  # hinge | nonsaturating | wgan_gp
    c.gan.n_critic = 1  # D updates per G update
    c.gan.r1_weight = 1.0  # gamma of R1 at real inputs; 0 disables
    c.gan.gp_weight = 10.0  # with wgan_gp
    c.gan.g_learning_rate = 1e-4  # TTUR: two optimizers, two rates
    c.gan.d_learning_rate = 2e-4
    c.gan.beta1 = 0.0
    c.gan.beta2 = 0.99
    c.gan.grad_clip_norm = 0.0  # 0 disables
    c.gan.ema_decay = 0.999  # the averaged generator converts at evaluation
    c.gan.adv_weight = 1.0
    c.gan.cycle_weight = 5.0
    c.gan.identity_weight = 2.0
    c.gan.content_weight = 0.0  # frame-energy contour L1
    # L1 of the normalised spectral-flux onset envelopes of input and output: rhythm survives
    # (as StarGANv2-VC's F0 consistency keeps the melody).
    c.gan.onset_weight = 0.0
    # 1 - the chroma similarity the vocoded output would keep (gan_losses.chroma_kept): harmony
    # survives. On fma/demo, 1.0 kept a judged chroma of 0.912, 5.0 of 0.966 at less style.
    c.gan.chroma_weight = 1.0
    c.gan.classifier_weight = 1.0  # used only with classifier_workdir
    c.gan.classifier_augment = False  # the classifier's own augmentations before it judges G
    c.gan.confusion_weight = 0.0  # autoencoder: latent domain confusion; 0 disables
    # A jaxgenre.train classifier run with this frontend, frozen, in the generator's loss, or
    # several of different families as 'RUN_A,RUN_B' (their mean probabilities). Never the
    # evaluator's judge, nor of a judge member's family.
    c.gan.classifier_workdir = ml_collections.FieldReference(None, field_type=str)
    # DiffAugment ops on every input D sees, comma-separated ("roll,cutout,gain"; "": none): a
    # discriminator that sees a few hundred clips memorises them (Zhao et al. 2020).
    c.gan.diff_augment = ""
    c.gan.gain_db = 6.0  # random gain on training crops
    c.gan.db_offset = -20.0  # generator input: (dB - db_offset) / db_scale, about [-1, 1]
    c.gan.db_scale = 40.0

    c.evals = ml_collections.ConfigDict()
    c.evals.val = ml_collections.ConfigDict({
        "type": "transfer_proxy", "split": "validation", "clips": 64, "num_samples": 2,
        # the classifier that scores target accuracy (default: gan.classifier_workdir)
        "classifier_workdir": ml_collections.FieldReference(None, field_type=str)})
    c.best_metric = "val_target_accuracy"
    c.best_mode = "max"
    c.total_steps = 100_000
    c.eval_every_steps = 5_000
    c.checkpoint_every_steps = 5_000
    c.batch_size = 32

    for loss in LOSSES:
        if loss in words:
            c.gan.loss = loss
    if c.gan.loss == "wgan_gp":
        c.gan.n_critic, c.gan.r1_weight = 5, 0.0
    if "demo" in words:
        c.data.name = "fma/demo"
        # 128 mel bands, as the judges': at 64 the vocoder alone keeps a median chroma
        # similarity of 0.965 of the demo styles, at 128 0.999 (benchmarks.chroma_kept).
        c.model.channels = 16
        c.model.encoder_blocks, c.model.decoder_blocks = 1, 2
        c.discriminator.channels = 16
        c.data.crop_seconds = 1.5
        # Batch 8 runs 1,250 steps in less time than batch 16 ran 750 on a 2-core Intel Xeon:
        # 0.50-0.52 s/step (`python -m benchmarks.gan_step --sizes demo`) against 1.24.
        c.batch_size = 8
        c.total_steps = 1250  # 11.7-13.2 min on 2 CPU cores (Intel Xeon), evaluations included
        c.log_every_steps = 25
        c.eval_every_steps = 250
        c.checkpoint_every_steps = 250
        c.eval_batch_size = 16
        c.evals.val.clips = 32
        c.gan.g_learning_rate, c.gan.d_learning_rate = 4e-4, 4e-4
        # D's verdict per genre moves more style the judge hears than the loss classifier's:
        # 1 / 2 / 4 gave 0.49 / 0.54 / 0.61 judged target accuracy on validation at step 1,250.
        c.gan.adv_weight = 4.0
        c.gan.classifier_augment = True  # the judge followed the loss classifier further
    return c
