"""A compact 2-D CNN on MFCCs [B, T, n_mfcc, 1], the classic MFCC-based genre classifier."""
import jax
from flax import nnx

from jaxgenre.models.ops.layers import ConvBN, head


class MfccCNN(nnx.Module):
    input_kind = "mfcc"

    def __init__(self, num_classes: int, *, channels=(32, 64, 128), dropout: float = 0.3,
                 dtype=None, rngs: nnx.Rngs):
        convs, ch = [], 1
        for out in channels:
            convs.append(ConvBN(ch, out, (3, 3), dtype=dtype, rngs=rngs))
            ch = out
        self.convs = nnx.List(convs)
        self.dropout = nnx.Dropout(dropout)
        self.dense = nnx.Linear(ch, num_classes, dtype=dtype, rngs=rngs)

    def __call__(self, x: jax.Array, *, train: bool, rngs: nnx.Rngs | None = None) -> jax.Array:
        for conv in self.convs:
            x = nnx.max_pool(conv(x, train), (2, 2), strides=(2, 2), padding="SAME")
        return head(x, self.dense, self.dropout, train, rngs)
