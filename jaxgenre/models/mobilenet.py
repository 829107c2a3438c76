"""MobileNetV2 (Sandler et al. 2018), layer for layer as `tf.keras.applications.MobileNetV2`.

Same widths (`_make_divisible`), same blocks, same padding, no biases before BatchNorm: the
parameter count (with BatchNorm statistics) equals Keras's for the same input channels and
classes, and with Keras's weights (`jaxgenre.import_weights mobilenet_v2`, bn_epsilon=1e-3) so
do the outputs (tests/test_keras_weights.py).
"""
import jax
from flax import nnx

from jaxgenre.models.ops.layers import ConvBN, head

# (expansion t, output channels c, repeats n, first stride s), from the paper's Table 2.
_BLOCKS = ((1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1),
           (6, 160, 3, 2), (6, 320, 1, 1))


def _make_divisible(v: float, divisor: int = 8) -> int:
    new_v = max(divisor, int(v + divisor / 2) // divisor * divisor)
    return new_v + divisor if new_v < 0.9 * v else new_v


class InvertedResidual(nnx.Module):
    def __init__(self, in_ch, out_ch, stride, expansion, *, bn_epsilon, dtype, rngs):
        hidden = in_ch * expansion
        kw = {"bn_epsilon": bn_epsilon, "dtype": dtype, "rngs": rngs}
        self.expand = (ConvBN(in_ch, hidden, (1, 1), act=nnx.relu6, **kw)
                       if expansion != 1 else None)
        self.depthwise = ConvBN(hidden, hidden, (3, 3), strides=stride, depthwise=True,
                                act=nnx.relu6, **kw)
        self.project = ConvBN(hidden, out_ch, (1, 1), act=None, **kw)
        self.residual = stride == 1 and in_ch == out_ch

    def __call__(self, x, train):
        y = self.expand(x, train) if self.expand is not None else x
        y = self.project(self.depthwise(y, train), train)
        return x + y if self.residual else y


class MobileNetV2(nnx.Module):
    """MobileNetV2 on a log-mel image [B, T, n_mels, in_channels] -> logits [B, num_classes].

    width: Keras's alpha (0.35 to 1.4). bn_epsilon: 1e-5 (ours), 1e-3 for Keras's weights.
    """
    input_kind = "log_mel"

    def __init__(self, num_classes: int, *, in_channels: int = 1, width: float = 1.0,
                 dropout: float = 0.2, bn_epsilon: float = 1e-5, dtype=None, rngs: nnx.Rngs):
        kw = {"bn_epsilon": bn_epsilon, "dtype": dtype, "rngs": rngs}
        ch = _make_divisible(32 * width)
        self.stem = ConvBN(in_channels, ch, (3, 3), strides=2, act=nnx.relu6, **kw)
        blocks = []
        for t, c, n, s in _BLOCKS:
            out = _make_divisible(int(c * width))
            for i in range(n):
                blocks.append(InvertedResidual(ch, out, s if i == 0 else 1, t, **kw))
                ch = out
        self.blocks = nnx.List(blocks)
        last = _make_divisible(1280 * width) if width > 1.0 else 1280
        self.last = ConvBN(ch, last, (1, 1), act=nnx.relu6, **kw)
        self.dropout = nnx.Dropout(dropout)
        self.dense = nnx.Linear(last, num_classes, dtype=dtype, rngs=rngs)

    def __call__(self, x: jax.Array, *, train: bool, rngs: nnx.Rngs | None = None) -> jax.Array:
        x = self.stem(x, train)
        for block in self.blocks:
            x = block(x, train)
        return head(self.last(x, train), self.dense, self.dropout, train, rngs)
