"""CRNN (Choi et al. 2017): conv blocks on the log-mel, then a GRU over time.

[B, T, n_mels, 1] -> four conv-BN-ReLU-pool blocks (time pooled 2x twice, frequency down to a
few bands) -> [B, T/4, features] -> GRU -> mean over time -> dropout -> logits.
"""
import jax
import jax.numpy as jnp
from flax import nnx

from jaxgenre.models.ops.layers import ConvBN

_POOLS = ((2, 2), (2, 2), (1, 4), (1, 4))


class CRNN(nnx.Module):
    input_kind = "log_mel"

    def __init__(self, num_classes: int, *, n_mels: int = 128, channels=(64, 128, 128, 128),
                 gru: int = 128, dropout: float = 0.3, dtype=None, rngs: nnx.Rngs):
        convs, ch = [], 1
        for out in channels:
            convs.append(ConvBN(ch, out, (3, 3), dtype=dtype, rngs=rngs))
            ch = out
        self.convs = nnx.List(convs)
        bands = n_mels
        for _, f in _POOLS:
            bands = -(-bands // f)
        # rngs=False: the carry starts at zeros, so the RNN keeps no random state to checkpoint.
        self.gru = nnx.RNN(nnx.GRUCell(ch * bands, gru, dtype=dtype, rngs=rngs), rngs=False)
        self.dropout = nnx.Dropout(dropout)
        self.dense = nnx.Linear(gru, num_classes, dtype=dtype, rngs=rngs)

    def __call__(self, x: jax.Array, *, train: bool, rngs: nnx.Rngs | None = None) -> jax.Array:
        for conv, pool in zip(self.convs, _POOLS):
            x = nnx.max_pool(conv(x, train), pool, strides=pool, padding="SAME")
        x = x.reshape(x.shape[0], x.shape[1], -1)  # [B, T', bands * channels]
        carry = jnp.zeros((x.shape[0], self.dense.in_features), x.dtype)
        x = jnp.mean(self.gru(x, initial_carry=carry), axis=1)
        x = self.dropout(x, deterministic=not train, rngs=rngs)
        return self.dense(x).astype(jnp.float32)
