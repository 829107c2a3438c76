"""Raw-audio models on the waveform [B, N] (float, int16 scale divided by 32768).

`Cnn1D` is the original project's baseline: Conv1D 128 -> pool -> Conv1D 64 -> pool -> dense
-> dropout -> logits. `SampleCNN` (Lee et al. 2017) learns from samples with 3-sample filters:
a strided stem and nine conv-BN-ReLU-maxpool(3) blocks, then a global max pool.
"""
import jax
import jax.numpy as jnp
from flax import nnx

from jaxgenre.models.ops.layers import ConvBN


class Cnn1D(nnx.Module):
    input_kind = "waveform"

    def __init__(self, num_classes: int, *, hidden: int = 128, dropout: float = 0.5, dtype=None,
                 rngs: nnx.Rngs):
        # A 64-sample, stride-16 first filter keeps the first feature map affordable.
        self.conv1 = nnx.Conv(1, 128, (64,), strides=16, padding="SAME", dtype=dtype, rngs=rngs)
        self.conv2 = nnx.Conv(128, 64, (16,), padding="SAME", dtype=dtype, rngs=rngs)
        self.hidden = nnx.Linear(64, hidden, dtype=dtype, rngs=rngs)
        self.dropout = nnx.Dropout(dropout)
        self.dense = nnx.Linear(hidden, num_classes, dtype=dtype, rngs=rngs)

    def __call__(self, x: jax.Array, *, train: bool, rngs: nnx.Rngs | None = None) -> jax.Array:
        x = nnx.max_pool(nnx.relu(self.conv1(x[..., None])), (8,), strides=(8,))
        x = jnp.max(nnx.relu(self.conv2(x)), axis=1)  # global max pool over time
        x = self.dropout(nnx.relu(self.hidden(x)), deterministic=not train, rngs=rngs)
        return self.dense(x).astype(jnp.float32)


class SampleCNN(nnx.Module):
    input_kind = "waveform"
    _CHANNELS = (128, 128, 256, 256, 256, 256, 256, 256, 512)

    def __init__(self, num_classes: int, *, dropout: float = 0.5, dtype=None, rngs: nnx.Rngs):
        self.stem = ConvBN(1, 128, (3,), strides=3, dtype=dtype, rngs=rngs)
        blocks, ch = [], 128
        for out in self._CHANNELS:
            blocks.append(ConvBN(ch, out, (3,), dtype=dtype, rngs=rngs))
            ch = out
        self.blocks = nnx.List(blocks)
        self.dropout = nnx.Dropout(dropout)
        self.dense = nnx.Linear(ch, num_classes, dtype=dtype, rngs=rngs)

    def __call__(self, x: jax.Array, *, train: bool, rngs: nnx.Rngs | None = None) -> jax.Array:
        x = self.stem(x[..., None], train)
        for block in self.blocks:
            x = nnx.max_pool(block(x, train), (3,), strides=(3,), padding="SAME")
        x = self.dropout(jnp.max(x, axis=1), deterministic=not train, rngs=rngs)
        return self.dense(x).astype(jnp.float32)
