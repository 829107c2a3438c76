"""musicnn (Pons & Serra 2019), layer for layer as the `musicnn` package's TensorFlow graph.

[B, T, n_mels, 1] log-mel (musicnn's `log10(10000 x + 1)`) -> BatchNorm -> front-end: two
timbral convolutions (7 frames x 40% / 70% of the mel bands) and three temporal ones (128, 64,
32 frames x 1 band), each ReLU -> BatchNorm -> max over frequency: [B, T, 561] -> mid-end: three
1-D convolutions of 7 frames (ReLU -> BatchNorm, the last two residual), all four stages
concatenated: [B, T, 753] -> back-end: max and mean over time, interleaved as TensorFlow's
flatten leaves them [B, 1506] -> BatchNorm -> dropout -> dense 200 ReLU -> BatchNorm (the
`penultimate` features) -> dropout -> `dense` -> logits [B, num_classes] float32. Fully
convolutional in time: any T. `jaxgenre.import_weights` loads the published MSD / MTT weights.
"""
import jax
import jax.numpy as jnp
from flax import nnx

# tf.compat.v1.layers' defaults, so imported statistics mean what they meant in TensorFlow.
_BN = {"epsilon": 1e-3, "momentum": 0.99}
# TensorFlow's default initialisers, for training from scratch as the original did.
_INIT = {"kernel_init": nnx.initializers.glorot_uniform()}
_TIMBRAL_WIDTHS = (0.4, 0.7)  # of n_mels
_TEMPORAL_LENGTHS = (128, 64, 32)  # frames
_MIDEND_LENGTH = 7  # frames


class _ConvReluBN(nnx.Module):
    """Conv (with bias) -> ReLU -> BatchNorm, musicnn's order, optionally max over frequency."""

    def __init__(self, in_ch: int, out_ch: int, kernel, padding, *, dtype, rngs: nnx.Rngs):
        self.conv = nnx.Conv(in_ch, out_ch, kernel, padding=padding, dtype=dtype, **_INIT,
                             rngs=rngs)
        self.bn = nnx.BatchNorm(out_ch, dtype=dtype, **_BN, rngs=rngs)

    def __call__(self, x: jax.Array, train: bool) -> jax.Array:
        return self.bn(nnx.relu(self.conv(x)), use_running_average=not train)


class Musicnn(nnx.Module):
    """musicnn on a log-mel [B, T, n_mels, 1] -> logits [B, num_classes] float32."""
    input_kind = "log_mel"

    def __init__(self, num_classes: int, *, n_mels: int = 96, num_filt_frontend: float = 1.6,
                 num_filt_midend: int = 64, num_units_backend: int = 200, dropout: float = 0.5,
                 dtype=None, rngs: nnx.Rngs):
        self.input_bn = nnx.BatchNorm(1, dtype=dtype, **_BN, rngs=rngs)
        timbral, temporal = int(num_filt_frontend * 128), int(num_filt_frontend * 32)
        # Timbral: 'valid' over frequency; the 3 + 3 frames of time padding keep T frames.
        self.timbral = nnx.List([
            _ConvReluBN(1, timbral, (7, int(w * n_mels)), ((3, 3), (0, 0)), dtype=dtype, rngs=rngs)
            for w in _TIMBRAL_WIDTHS])
        # Temporal: TensorFlow's 'same', which for an even length k pads (k - 1) // 2 frames
        # before and k // 2 after; written out so it cannot drift.
        self.temporal = nnx.List([
            _ConvReluBN(1, temporal, (k, 1), (((k - 1) // 2, k // 2), (0, 0)), dtype=dtype,
                        rngs=rngs)
            for k in _TEMPORAL_LENGTHS])
        # musicnn's mid-end convolves a 1-channel image with kernels as wide as the image: a
        # 1-D convolution over time whose input channels are the features.
        front = len(_TIMBRAL_WIDTHS) * timbral + len(_TEMPORAL_LENGTHS) * temporal
        pad = ((_MIDEND_LENGTH // 2, _MIDEND_LENGTH // 2),)
        self.midend = nnx.List([
            _ConvReluBN(c, num_filt_midend, (_MIDEND_LENGTH,), pad, dtype=dtype, rngs=rngs)
            for c in (front, num_filt_midend, num_filt_midend)])
        pooled = 2 * (front + 3 * num_filt_midend)
        self.pool_bn = nnx.BatchNorm(pooled, dtype=dtype, **_BN, rngs=rngs)
        self.hidden = nnx.Linear(pooled, num_units_backend, dtype=dtype, **_INIT, rngs=rngs)
        self.hidden_bn = nnx.BatchNorm(num_units_backend, dtype=dtype, **_BN, rngs=rngs)
        self.dropout = nnx.Dropout(dropout)
        self.dense = nnx.Linear(num_units_backend, num_classes, dtype=dtype, **_INIT, rngs=rngs)

    def __call__(self, x: jax.Array, *, train: bool, rngs: nnx.Rngs | None = None) -> jax.Array:
        x = self.input_bn(x, use_running_average=not train)
        front = [jnp.max(block(x, train), axis=2) for block in (*self.timbral, *self.temporal)]
        stages = [jnp.concatenate(front, axis=-1)]  # [B, T, 561]
        for i, block in enumerate(self.midend):
            y = block(stages[-1], train)
            stages.append(y if i == 0 else y + stages[-1])
        h = jnp.concatenate(stages, axis=-1)  # [B, T, 753]
        # TensorFlow concatenated [B, C, 1] max and mean pools on the last axis and flattened:
        # feature 2c is channel c's max, 2c + 1 its mean.
        h = jnp.stack([jnp.max(h, axis=1), jnp.mean(h, axis=1)], axis=-1).reshape(h.shape[0], -1)
        h = self.dropout(self.pool_bn(h, use_running_average=not train), deterministic=not train,
                         rngs=rngs)
        h = self.hidden_bn(nnx.relu(self.hidden(h)), use_running_average=not train)
        h = self.dropout(h, deterministic=not train, rngs=rngs)
        return self.dense(h).astype(jnp.float32)
