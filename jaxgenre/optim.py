"""The optimizer from config: AdamW or SGD-momentum, warmup + cosine, clipping, weight decay."""
import jax
import ml_collections
import optax


def _decay_mask(params):
    # No weight decay on biases and BatchNorm scales/offsets (the 1-D parameters).
    return jax.tree.map(lambda p: p.ndim > 1, params)


def schedule(cfg: ml_collections.ConfigDict, total_steps: int) -> optax.Schedule:
    """Linear warmup from 0, then cosine decay to 0 at `total_steps`."""
    return optax.warmup_cosine_decay_schedule(
        init_value=0.0, peak_value=cfg.learning_rate, warmup_steps=cfg.warmup_steps,
        decay_steps=max(total_steps, cfg.warmup_steps + 1))


def make(cfg: ml_collections.ConfigDict, total_steps: int) -> optax.GradientTransformation:
    """`cfg` is `config.optim`."""
    lr = schedule(cfg, total_steps)
    if cfg.name == "adamw":
        opt = optax.adamw(lr, weight_decay=cfg.weight_decay, mask=_decay_mask)
    elif cfg.name == "sgd":
        opt = optax.chain(optax.add_decayed_weights(cfg.weight_decay, mask=_decay_mask),
                          optax.sgd(lr, momentum=cfg.momentum, nesterov=True))
    else:
        raise ValueError(f"Unknown optim.name {cfg.name!r}; expected 'adamw' or 'sgd'.")
    if cfg.grad_clip_norm:
        opt = optax.chain(optax.clip_by_global_norm(cfg.grad_clip_norm), opt)
    return opt

