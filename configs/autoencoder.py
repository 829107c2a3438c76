r"""The non-adversarial style-transfer baseline: an autoencoder whose decoder is conditioned on
the genre (reconstruct through the source genre, convert by decoding with another), optionally
with a latent genre classifier the encoder learns to confuse (gan.confusion_weight).

Run:
  python -m jaxgenre.train --config configs/autoencoder.py:demo --workdir runs/autoencoder_demo \
      --config.gan.classifier_workdir=runs/gan_classifier   # scores validation clips
"""
from jaxgenre.configs import stargan


def get_config(arg: str | None = None):
    words = {w for w in (arg or "").split(",") if w}
    if words - {"demo"}:
        raise ValueError(f"Unknown config argument(s) {sorted(words - {'demo'})}; valid: demo.")
    c = stargan.style_transfer_config("autoencoder", words)
    c.model.skip = False  # everything passes through the latent
    c.discriminator = {"name": "latent_classifier", "dtype": "float32", "channels": 64}
    c.gan.classifier_weight = 0.0  # a plain autoencoder; the classifier only scores
    c.gan.confusion_weight = 0.1
    c.gan.d_learning_rate = c.gan.g_learning_rate
    return c
