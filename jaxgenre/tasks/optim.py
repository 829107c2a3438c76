"""The optimizer from config: AdamW or SGD-momentum, warmup + cosine, clipping, weight decay.

For fine-tuning, parameters fall in three groups by their top-level module: the `dense` head
(the learning rate), the encoder (`encoder_lr_scale` times it) and frozen modules (`freeze`, or
the whole encoder when `encoder_lr_scale` is 0: a linear probe), whose parameters are never
updated and whose gradients the train step does not compute (`stop_frozen_gradients`). Their
BatchNorm statistics still follow the new data unless `model.freeze_bn` runs the model in
inference mode.
"""
import functools

import jax
import ml_collections
import optax

from jaxgenre import models


def _decay_mask(params):
    # No weight decay on biases and BatchNorm scales/offsets (the 1-D parameters).
    return jax.tree.map(lambda p: p.ndim > 1, params)


def schedule(cfg: ml_collections.ConfigDict, total_steps: int) -> optax.Schedule:
    """Linear warmup from 0, then cosine decay to 0 at `total_steps`."""
    return optax.warmup_cosine_decay_schedule(
        init_value=0.0, peak_value=cfg.learning_rate, warmup_steps=cfg.warmup_steps,
        decay_steps=max(total_steps, cfg.warmup_steps + 1))


def param_groups(cfg: ml_collections.ConfigDict, params):
    """'head' | 'encoder' | 'frozen' for each parameter (a tree like `params`)."""
    frozen = set(cfg.freeze)
    probe = cfg.encoder_lr_scale == 0.0

    def group(path, _):
        top = jax.tree_util.keystr(path[:1], simple=True)
        if top == models.HEAD:
            return "head"
        return "frozen" if probe or top in frozen else "encoder"
    return jax.tree_util.tree_map_with_path(group, params)


def check_freeze(cfg: ml_collections.ConfigDict, params) -> None:
    """Refuses `freeze` names that are not top-level modules of the model (or are its head)."""
    modules = {jax.tree_util.keystr(p[:1], simple=True)
               for p, _ in jax.tree_util.tree_flatten_with_path(params)[0]}
    unknown = sorted(set(cfg.freeze) - (modules - {models.HEAD}))
    if unknown:
        raise ValueError(f"optim.freeze names {unknown}: not modules of this model's encoder; "
                         f"valid: {', '.join(sorted(modules - {models.HEAD}))}.")


def stop_frozen_gradients(cfg: ml_collections.ConfigDict, params):
    """`params` with the frozen ones behind `stop_gradient`, so that XLA computes no gradient
    for them (on CPU, a wide convolution's kernel gradient can cost 16x its forward pass)."""
    return jax.tree.map(lambda p, g: jax.lax.stop_gradient(p) if g == "frozen" else p,
                        params, param_groups(cfg, params))


def _update_rule(cfg: ml_collections.ConfigDict, lr: optax.Schedule
                 ) -> optax.GradientTransformation:
    if cfg.name == "adamw":
        return optax.adamw(lr, weight_decay=cfg.weight_decay, mask=_decay_mask)
    if cfg.name == "sgd":
        return optax.chain(optax.add_decayed_weights(cfg.weight_decay, mask=_decay_mask),
                           optax.sgd(lr, momentum=cfg.momentum, nesterov=True))
    raise ValueError(f"Unknown optim.name {cfg.name!r}; expected 'adamw' or 'sgd'.")


def make(cfg: ml_collections.ConfigDict, total_steps: int) -> optax.GradientTransformation:
    """`cfg` is `config.optim`."""
    lr = schedule(cfg, total_steps)
    opt = _update_rule(cfg, lr)
    scale = cfg.encoder_lr_scale
    if scale != 1.0 or cfg.freeze:
        encoder = opt if scale == 1.0 else _update_rule(cfg, lambda step: scale * lr(step))
        opt = optax.multi_transform(
            {"head": opt, "encoder": encoder, "frozen": optax.set_to_zero()},
            functools.partial(param_groups, cfg))
    return with_clipping(opt, cfg.grad_clip_norm)  # over all gradients, before the split


def constant_adam(learning_rate: float, cfg: ml_collections.ConfigDict
                  ) -> optax.GradientTransformation:
    """The GAN's optimizers: constant-rate Adam with `cfg.beta1`, `cfg.beta2` (StarGAN v2: 0.0,
    0.99) and `cfg.grad_clip_norm`. `cfg` is `config.gan`."""
    return with_clipping(optax.adam(learning_rate, b1=cfg.beta1, b2=cfg.beta2),
                         cfg.grad_clip_norm)


def with_clipping(opt: optax.GradientTransformation, grad_clip_norm: float
                  ) -> optax.GradientTransformation:
    """`opt` after clipping the gradients' global norm to `grad_clip_norm` (0: `opt` as is)."""
    return optax.chain(optax.clip_by_global_norm(grad_clip_norm), opt) if grad_clip_norm else opt

