"""ResNet-18/34/50 (He et al. 2016), torchvision's layout (v1.5: stride in the 3x3 conv).

At 3 input channels and 1000 classes the trainable parameter counts equal torchvision's:
11,689,512 / 21,797,672 / 25,557,032.
"""
import jax
from flax import nnx

from jaxgenre.models.layers import ConvBN, head


class BasicBlock(nnx.Module):
    expansion = 1

    def __init__(self, in_ch, ch, stride, *, dtype, rngs):
        self.conv1 = ConvBN(in_ch, ch, (3, 3), strides=stride, dtype=dtype, rngs=rngs)
        self.conv2 = ConvBN(ch, ch, (3, 3), act=None, dtype=dtype, rngs=rngs)
        self.shortcut = (ConvBN(in_ch, ch, (1, 1), strides=stride, act=None, dtype=dtype, rngs=rngs)
                         if stride != 1 or in_ch != ch else None)

    def __call__(self, x, train):
        y = self.conv2(self.conv1(x, train), train)
        return nnx.relu(y + (self.shortcut(x, train) if self.shortcut is not None else x))


class Bottleneck(nnx.Module):
    expansion = 4

    def __init__(self, in_ch, ch, stride, *, dtype, rngs):
        out = ch * self.expansion
        self.conv1 = ConvBN(in_ch, ch, (1, 1), dtype=dtype, rngs=rngs)
        self.conv2 = ConvBN(ch, ch, (3, 3), strides=stride, dtype=dtype, rngs=rngs)
        self.conv3 = ConvBN(ch, out, (1, 1), act=None, dtype=dtype, rngs=rngs)
        self.shortcut = (ConvBN(in_ch, out, (1, 1), strides=stride, act=None, dtype=dtype, rngs=rngs)
                         if stride != 1 or in_ch != out else None)

    def __call__(self, x, train):
        y = self.conv3(self.conv2(self.conv1(x, train), train), train)
        return nnx.relu(y + (self.shortcut(x, train) if self.shortcut is not None else x))


class ResNet(nnx.Module):
    """ResNet on a log-mel image [B, T, n_mels, in_channels] -> logits [B, num_classes]."""
    input_kind = "log_mel"

    def __init__(self, num_classes: int, *, block, layers, in_channels: int = 1,
                 dropout: float = 0.0, dtype=None, rngs: nnx.Rngs):
        self.stem = ConvBN(in_channels, 64, (7, 7), strides=2, dtype=dtype, rngs=rngs)
        stages, ch = [], 64
        for i, n in enumerate(layers):
            width = 64 * 2 ** i
            for j in range(n):
                stages.append(block(ch, width, 2 if i > 0 and j == 0 else 1, dtype=dtype, rngs=rngs))
                ch = width * block.expansion
        self.blocks = nnx.List(stages)
        self.dropout = nnx.Dropout(dropout)
        self.dense = nnx.Linear(ch, num_classes, dtype=dtype, rngs=rngs)

    def __call__(self, x: jax.Array, *, train: bool, rngs: nnx.Rngs | None = None) -> jax.Array:
        x = self.stem(x, train)
        x = nnx.max_pool(x, (3, 3), strides=(2, 2), padding="SAME")
        for block in self.blocks:
            x = block(x, train)
        return head(x, self.dense, self.dropout, train, rngs)


class ResNet18(ResNet):
    def __init__(self, num_classes: int, **kwargs):
        super().__init__(num_classes, block=BasicBlock, layers=(2, 2, 2, 2), **kwargs)


class ResNet34(ResNet):
    def __init__(self, num_classes: int, **kwargs):
        super().__init__(num_classes, block=BasicBlock, layers=(3, 4, 6, 3), **kwargs)


class ResNet50(ResNet):
    def __init__(self, num_classes: int, **kwargs):
        super().__init__(num_classes, block=Bottleneck, layers=(3, 4, 6, 3), **kwargs)
