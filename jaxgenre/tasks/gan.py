"""Genre style transfer as `jaxgenre.tasks.Task`s: a StarGAN-style GAN and its non-adversarial
baseline, a genre-conditioned autoencoder.

Both work on the fixed-reference log-mel (`frontend.ref`, e.g. 1.0: the level is kept, so the
output turns back into audio at the input's loudness), scaled to `(dB - gan.db_offset) /
gan.db_scale`. Both convert with one call, `convert(state, x, target)`, through the averaged
generator weights (`g_ema`), which evaluation, the transfer CLI and export use.

StarGAN step (one jitted update): D learns real clips as real for their own genre and G's
outputs as fake for the genre they aim at (hinge / non-saturating / WGAN-GP, optional R1 or
gradient penalty); then G, every `gan.n_critic` steps, learns to fool D for the target genre,
with cycle L1 (G(G(x, t), s) ~ x), identity L1 (G(x, s) ~ x), optional content terms (the
frame-energy contour: rhythm survives, timbre is free; the normalised onset envelope,
`gan_losses.onset_envelope_l1`: onsets survive; the chroma the vocoded output would keep,
`gan_losses.chroma_kept`: harmony survives) and an optional frozen genre classifier
(`gan.classifier_workdir`) pushing toward the target. Two Adam optimizers (TTUR). With
`gan.diff_augment`, D sees every input, real or generated, through one policy of random
differentiable augmentations (`augment.diff_augment`), each input its own draws.

Autoencoder step: reconstruction L1 of decode(encode(x), s); optionally a latent genre
classifier (the adversary) learns the genre from the latent while the encoder learns to hide it
(domain confusion, as the universal music translation network).
"""
import functools
from typing import ClassVar

import jax
import jax.numpy as jnp
import ml_collections
import optax
from flax import nnx, struct

from jaxgenre import models
from jaxgenre.audio import augment, frontend
from jaxgenre.core import sharding
from jaxgenre.data import input_pipeline, spec, spectra
from jaxgenre.inference import judge
from jaxgenre.models import stargan
from jaxgenre.run import config_checks
from jaxgenre.tasks import classifier, gan_losses, optim

# A bound on conversions for audio out. A generator trained on short crops can blow up at the
# edges of a long input (a dev-set run gave +390 dB in the last 8 frames of some 30 s clips, where
# the instance norms' whole-clip statistics no longer rein in one edge): 10 ** (390 / 10) is not a
# float32, so the vocoder returned NaN. Nothing a conversion should do is 40 dB above the input.
MAX_BOOST_DB = 40.0
# Frames of the input's own content mirrored beyond each time edge before a conversion and cut
# off after it. The generator's convolutions zero-pad the log-mel's time edges, and a GAN learns
# to put bursts there: the demo GAN's outputs averaged 28.7 dB above their median 100 ms in the
# first or last 100 ms (identity codec: 3.8), 4.2 dB with 16 frames of context (64: 4.3), on
# the first 16 demo test clips to every other genre (112 outputs).
CONTEXT_FRAMES = 16


class GanState(struct.PyTreeNode):
    """Everything a style-transfer checkpoint holds, replicated. `d_*` is the discriminator
    (StarGAN) or the latent genre classifier (autoencoder)."""
    ITEMS: ClassVar = {"generator": ("g_params",), "discriminator": ("d_params", "d_rest"),
                       "generator_ema": ("g_ema",), "generator_optimizer": ("g_opt",),
                       "discriminator_optimizer": ("d_opt",), "progress": ("step",)}
    step: jax.Array  # int32 scalar: updates done
    g_params: nnx.State
    d_params: nnx.State
    d_rest: nnx.State  # spectral-norm vectors
    g_opt: optax.OptState
    d_opt: optax.OptState
    g_ema: nnx.State  # exponential moving average of g_params: what converts at evaluation



class _StyleTransferTask:
    """What the StarGAN and the autoencoder share: models, optimizers, features, conversion."""
    eval_items = ("generator_ema", "progress")  # the checkpoint items evaluation reads

    @staticmethod
    def check_config(config: ml_collections.ConfigDict) -> None:
        for section in ("model", "discriminator"):
            models.get(config[section].name)  # raises, listing the registered models
        config_checks.check_choices({"gan.loss": (config.gan.loss, gan_losses.LOSSES)})
        for op in _policy(config.gan):
            config_checks.check_choices({"gan.diff_augment": (op, augment.DIFF_AUGMENT)})
        if config.data.label == "genres":
            raise ValueError(f"data.label='genres' (multi-label) is for the classifier task; the "
                             f"{config.task} task takes one genre per clip: pass "
                             "--config.data.label=genre_top.")
        if config.gan.n_critic < 1:
            raise ValueError(f"gan.n_critic must be at least 1, got {config.gan.n_critic}.")
        if config.task == "autoencoder" and config.model.eq_prior:
            raise ValueError("model.eq_prior is the StarGAN's (its cycle and identity terms undo "
                             "the prior); the autoencoder reconstructs x itself: pass "
                             "--config.model.eq_prior=0.")
        if config.model.eq_prior < 0:
            raise ValueError(f"model.eq_prior must be at least 0 (0: none, 1: the eq baseline "
                             f"as the starting point), got {config.model.eq_prior}.")

    def __init__(self, config: ml_collections.ConfigDict, data: spec.DataSpec, mesh,
                 training: bool = True):
        self.config, self.data, self.mesh, self.gan = config, data, mesh, config.gan
        if config.frontend.get("ref") is None:
            raise ValueError("Style transfer needs a fixed-reference log-mel: set frontend.ref "
                             "(e.g. 1.0) so the level survives the round trip to audio.")
        self.mel = classifier.mel_config(config, data.sample_rate)
        self.g_tx = optim.constant_adam(self.gan.g_learning_rate, self.gan)
        self.d_tx = optim.constant_adam(self.gan.d_learning_rate, self.gan)
        self.init_key, self.step_key = jax.random.split(jax.random.key(config.seed))
        g, d = self._models(self.init_key, abstract=True)
        self.g_graph, self.d_graph = models.split(g)[0], models.split(d)[0]
        # The loss's classifier: a run read back to convert or evaluate never needs it.
        self.frozen = None
        if training and self.gan.classifier_workdir:
            self.frozen = judge.frozen(self.gan.classifier_workdir, mesh, self.mel,
                                       data.class_names)

    def _models(self, key: jax.Array, abstract: bool = False):
        """(generator, discriminator), or their abstract shapes."""
        def make():
            rngs = nnx.Rngs(params=key)
            num_classes = self.data.num_classes
            return (models.create(self.config.model, num_classes, rngs, n_mels=self.mel.n_mels,
                                  db_scale=self.gan.db_scale),
                    models.create(self.config.discriminator, num_classes, rngs,
                                  **self._d_extra()))
        return nnx.eval_shape(make) if abstract else make()

    def _d_extra(self) -> dict:
        return {}

    def init(self) -> GanState:
        g, d = self._models(self.init_key)
        _, g_params, g_rest = models.split(g)
        if jax.tree.leaves(g_rest):
            raise ValueError("The generator must hold only nnx.Params (no batch statistics).")
        _, d_params, d_rest = models.split(d)
        return GanState(step=jnp.zeros((), jnp.int32), g_params=g_params, d_params=d_params,
                        d_rest=d_rest, g_opt=self.g_tx.init(g_params),
                        d_opt=self.d_tx.init(d_params), g_ema=g_params)

    # ------------------------------------------------------------------ features and conversion
    def to_input(self, db: jax.Array) -> jax.Array:
        """Fixed-reference dB [B, T, M] -> generator input [B, T, M, 1]."""
        return ((db - self.gan.db_offset) / self.gan.db_scale)[..., None]

    def to_db(self, x: jax.Array) -> jax.Array:
        """Generator output [B, T, M, 1] -> dB [B, T, M]."""
        return x[..., 0] * self.gan.db_scale + self.gan.db_offset

    def power(self, audio: jax.Array, key: jax.Array | None = None) -> jax.Array:
        """int16 PCM [B, N] -> |STFT|^2 [B, T, F] float32; a random gain when `key` is set."""
        x = audio.astype(jnp.float32)
        if key is not None:
            x = augment.random_gain(key, x, self.gan.gain_db)
        return frontend.power_spectrogram(x, self.mel, mesh=self.mesh)

    def from_power(self, power: jax.Array) -> jax.Array:
        """|STFT|^2 [B, T, F] (`power`) -> generator input [B, T, M, 1]."""
        return self.to_input(frontend.compress(power, self.mel))

    def spectrogram(self, audio: jax.Array, key: jax.Array | None = None) -> jax.Array:
        """int16 PCM [B, N] -> generator input [B, T, M, 1]; a random gain when `key` is set."""
        return self.from_power(self.power(audio, key))

    def generate(self, g_params, x: jax.Array, target: jax.Array) -> jax.Array:
        return nnx.merge(self.g_graph, g_params)(x, target)

    def prior(self, g_params, x: jax.Array, target: jax.Array) -> jax.Array:
        """What G starts from before its network: x moved by the eq prior (x itself without)."""
        return nnx.merge(self.g_graph, g_params).prior(x, target)

    def convert(self, state: GanState, x: jax.Array, target: jax.Array) -> jax.Array:
        """Generator input [B, T, M, 1] -> converted [B, T, M, 1], by the averaged weights, with
        `CONTEXT_FRAMES` of mirrored context at each time edge, at most `MAX_BOOST_DB` above
        the input's loudest bin."""
        k = min(CONTEXT_FRAMES, x.shape[1] - 1)  # a mirror needs a frame beyond the edge one
        y = self.generate(state.g_ema, jnp.pad(x, ((0, 0), (k, k), (0, 0), (0, 0)),
                                               mode="reflect"), target)[:, k:k + x.shape[1]]
        return jnp.minimum(y, x.max(axis=(1, 2, 3), keepdims=True) + MAX_BOOST_DB / self.gan.db_scale)

    def _classifier_loss(self, y: jax.Array, target: jax.Array, key: jax.Array
                         ) -> tuple[jax.Array, jax.Array]:
        """(cross-entropy of the frozen classifier toward `target`, its accuracy) on outputs y,
        under the classifier's augmentations when `gan.classifier_augment`."""
        if self.frozen is None:
            return jnp.zeros(()), jnp.zeros(())
        logits = self.frozen.logits(self.frozen.params, self.to_db(y),
                                    key if self.gan.classifier_augment else None)
        ce = optax.softmax_cross_entropy_with_integer_labels(logits, target).mean()
        return ce, jnp.mean(jnp.argmax(logits, -1) == target)

    # ------------------------------------------------------------------ the update
    def _update_d(self, state, d_grads):
        """(new d_params, new d_opt)."""
        updates, d_opt = self.d_tx.update(d_grads, state.d_opt, state.d_params)
        return optax.apply_updates(state.d_params, updates), d_opt

    def _finish(self, state, d_params, d_opt, d_rest, g_grads):
        """Applies G's update and the EMA; returns the new state."""
        g_updates, g_opt = self.g_tx.update(g_grads, state.g_opt, state.g_params)
        g_params = optax.apply_updates(state.g_params, g_updates)
        # The average's warm-up counts generator updates (one per n_critic steps).
        rate = classifier.ema_rate(self.gan.ema_decay, state.step // self.gan.n_critic)
        g_ema = optax.incremental_update(g_params, state.g_ema, 1.0 - rate)
        return state.replace(step=state.step + 1, g_params=g_params, g_opt=g_opt,
                             d_params=d_params, d_opt=d_opt, d_rest=d_rest, g_ema=g_ema)

    def train_steps(self) -> tuple:
        return (self.train_step,)

    def warm_start(self, state: GanState) -> GanState:
        """With `model.eq_prior`: each genre's mean spectrum over training clips into G's
        `genre_ltas` (and its average's). The frozen loss classifier is restored in
        `__init__`."""
        if not self.config.model.eq_prior:
            return state
        data = self.config.data
        builder = input_pipeline.load_builder(data.name, data.data_dir, data.manual_dir)
        means = spectra.genre_ltas(builder, data.train_split, self.mel,
                                   spectra.CLIPS_PER_GENRE)
        units = (means - self.gan.db_offset) / self.gan.db_scale

        def with_spectra(params):
            g = nnx.merge(self.g_graph, params)
            # a buffer of its own for each tree: the step donates both
            g.genre_ltas.value = jax.device_put(units, sharding.replicated(self.mesh))
            return models.split(g)[1]

        return state.replace(g_params=with_spectra(state.g_params),
                             g_ema=with_spectra(state.g_ema))

    def learning_rates(self, step: int) -> dict[str, float]:
        return {"g_learning_rate": self.gan.g_learning_rate,
                "d_learning_rate": self.gan.d_learning_rate}

    def num_params(self, state: GanState) -> int:
        return sum(x.size for x in jax.tree.leaves((state.g_params, state.d_params)))


def _random_targets(key: jax.Array, source: jax.Array, num_classes: int) -> jax.Array:
    """A genre other than each source, uniformly."""
    return (source + jax.random.randint(key, source.shape, 1, num_classes)) % num_classes


def _param_norms(state: GanState) -> dict:
    return {"g_param_norm": optax.global_norm(state.g_params),
            "d_param_norm": optax.global_norm(state.d_params)}


def _policy(gan: ml_collections.ConfigDict) -> tuple[str, ...]:
    """`gan.diff_augment` "roll,cutout" -> ("roll", "cutout")."""
    return tuple(op.strip() for op in gan.diff_augment.split(",") if op.strip())


def _energy(x: jax.Array) -> jax.Array:
    """The frame-energy contour [B, T]: mean over mel bands."""
    return x[..., 0].mean(axis=-1)


class StarGanTask(_StyleTransferTask):
    """One conditional generator for every genre, a multi-task discriminator."""
    progress_metrics = ("d_loss", "g_loss", "d_real", "d_fake", "cycle_l1")

    def train_steps(self) -> tuple:
        """The full step (D, then G), then n_critic - 1 discriminator-only steps: separate
        functions, as XLA:CPU ran the same cycle under one `lax.cond` 2.5x slower per step
        (benchmarks.gan_step --loss wgan_gp)."""
        d_only = functools.partial(self.train_step, update_g=False)
        return (self.train_step,) + (d_only,) * (self.gan.n_critic - 1)

    def train_step(self, state: GanState, batch: dict, update_g: bool = True):
        """update_g=False: a discriminator-only step (G, its optimizer and average kept)."""
        gan = self.gan
        key = jax.random.fold_in(self.step_key, state.step)
        gain_key, target_key, gp_key = jax.random.split(key, 3)
        cls_key = jax.random.fold_in(key, 3)  # apart, so the other draws stay as they were
        # D's view of each input: the same augmentation policy, its own draws per call site.
        real_key, fake_key, g_aug_key = jax.random.split(jax.random.fold_in(key, 4), 3)
        policy = _policy(gan)

        def seen(v, aug_key):
            return augment.diff_augment(aug_key, v, policy) if policy else v

        power = self.power(batch["audio"], gain_key)  # kept for the harmony term
        x = self.from_power(power)
        source = batch["label"]
        target = _random_targets(target_key, source, self.data.num_classes)

        # ---- discriminator: real clips real for their genre, G's outputs fake for the target
        fake = jax.lax.stop_gradient(self.generate(state.g_params, x, target))

        real_view, fake_view = seen(x, real_key), seen(fake, fake_key)  # no gradient to D's

        def d_loss_fn(d_params):
            d = nnx.merge(self.d_graph, d_params, state.d_rest, copy=True)
            real_logit = d(real_view, source, update=True)
            fake_logit = d(fake_view, target, update=True)
            loss = gan_losses.discriminator_loss(gan.loss, real_logit, fake_logit)
            frozen_d = functools.partial(d, update=False)
            if gan.r1_weight:  # at the real inputs D saw: the gradient through their view
                loss += gan.r1_weight * gan_losses.r1_penalty(
                    lambda v: frozen_d(seen(v, real_key), source), x)
            if gan.loss == "wgan_gp":
                loss += gan.gp_weight * gan_losses.gradient_penalty(  # between the views D saw
                    lambda v: frozen_d(v, target), real_view, fake_view, gp_key)
            return loss, (models.rest(d), real_logit.mean(), fake_logit.mean())

        (d_loss, (d_rest, d_real, d_fake)), d_grads = jax.value_and_grad(
            d_loss_fn, has_aux=True)(state.d_params)

        d_params, d_opt = self._update_d(state, d_grads)
        d_metrics = {"d_loss": d_loss, "d_real": d_real, "d_fake": d_fake,
                     "d_grad_norm": optax.global_norm(d_grads)}
        if not update_g:
            new_state = state.replace(step=state.step + 1, d_params=d_params, d_opt=d_opt,
                                      d_rest=d_rest)
            return new_state, {**d_metrics, **_param_norms(new_state)}

        # ---- generator: fool D for the target genre, keep the content (cycle, identity)
        d = nnx.merge(self.d_graph, d_params, d_rest)

        def g_loss_fn(g_params):
            y = self.generate(g_params, x, target)
            adv = gan_losses.generator_loss(gan.loss, d(seen(y, g_aug_key), target))
            # Back to the source genre is x after the eq prior's shift to that genre (x itself
            # without the prior): the shift is free, the network's change is not.
            back = self.prior(g_params, x, source)
            cycle = jnp.abs(self.generate(g_params, y, source) - back).mean()
            identity = jnp.abs(self.generate(g_params, x, source) - back).mean()
            content = jnp.abs(_energy(y) - _energy(x)).mean()
            x_db, y_db = self.to_db(x), self.to_db(y)
            onset = gan_losses.onset_envelope_l1(x_db, y_db).mean()
            chroma = gan_losses.chroma_kept(power, y_db - x_db, self.mel).mean()
            cls, cls_acc = self._classifier_loss(y, target, cls_key)
            loss = (gan.adv_weight * adv + gan.cycle_weight * cycle
                    + gan.identity_weight * identity + gan.content_weight * content
                    + gan.onset_weight * onset
                    + gan.chroma_weight * (1.0 - chroma) + gan.classifier_weight * cls)
            return loss, {"g_adv": adv, "cycle_l1": cycle, "identity_l1": identity,
                          "content_l1": content, "onset_l1": onset, "chroma_kept": chroma,
                          "classifier_loss": cls,
                          "classifier_target_accuracy": cls_acc}

        (g_loss, g_metrics), g_grads = jax.value_and_grad(g_loss_fn, has_aux=True)(state.g_params)
        new_state = self._finish(state, d_params, d_opt, d_rest, g_grads)
        return new_state, {**d_metrics, "g_loss": g_loss, "g_grad_norm": optax.global_norm(g_grads),
                           **g_metrics, **_param_norms(new_state)}


class AutoencoderTask(_StyleTransferTask):
    """Reconstruction through a genre-conditioned decoder; the latent adversary is optional
    (`gan.confusion_weight` 0 turns it off)."""
    progress_metrics = ("g_loss", "recon_l1", "d_loss", "latent_accuracy")

    def _d_extra(self) -> dict:
        return {"in_features": 4 * self.config.model.channels}

    def train_step(self, state: GanState, batch: dict):
        gan = self.gan
        key = jax.random.fold_in(self.step_key, state.step)
        gain_key, target_key = jax.random.split(key)
        cls_key = jax.random.fold_in(key, 2)  # apart, so the other draws stay as they were
        x = self.spectrogram(batch["audio"], gain_key)
        source = batch["label"]
        target = _random_targets(target_key, source, self.data.num_classes)
        padded = stargan.pad_to_multiple(x, 4)

        def encode(g_params):
            return nnx.merge(self.g_graph, g_params).encode(padded)

        # ---- adversary: the genre from the latent
        z = jax.lax.stop_gradient(encode(state.g_params))

        def d_loss_fn(d_params):
            logits = nnx.merge(self.d_graph, d_params, state.d_rest)(z)
            ce = optax.softmax_cross_entropy_with_integer_labels(logits, source).mean()
            return ce, jnp.mean(jnp.argmax(logits, -1) == source)

        (d_loss, latent_acc), d_grads = jax.value_and_grad(d_loss_fn, has_aux=True)(state.d_params)
        adversary = nnx.merge(self.d_graph, state.d_params, state.d_rest)

        # ---- autoencoder: reconstruct through the source genre's decoder, hide the genre
        def g_loss_fn(g_params):
            g = nnx.merge(self.g_graph, g_params)
            latent = g.encode(padded)
            recon = g.decode(latent, source)[:, :x.shape[1], :x.shape[2]]
            rec = jnp.abs(recon - x).mean()
            confusion = gan_losses.confusion_loss(adversary(latent))
            cls, cls_acc = self._classifier_loss(g(x, target), target, cls_key) \
                if gan.classifier_weight else (jnp.zeros(()), jnp.zeros(()))
            loss = rec + gan.confusion_weight * confusion + gan.classifier_weight * cls
            return loss, {"recon_l1": rec, "classifier_loss": cls,
                          "classifier_target_accuracy": cls_acc}

        (g_loss, g_metrics), g_grads = jax.value_and_grad(g_loss_fn, has_aux=True)(state.g_params)
        d_params, d_opt = self._update_d(state, d_grads)
        new_state = self._finish(state, d_params, d_opt, state.d_rest, g_grads)
        return new_state, {"g_loss": g_loss, "d_loss": d_loss, "latent_accuracy": latent_acc,
                           "g_grad_norm": optax.global_norm(g_grads), **g_metrics,
                           **_param_norms(new_state)}
