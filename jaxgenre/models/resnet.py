"""ResNet-18/34/50 (He et al. 2016), torchvision's layout (v1.5: stride in the 3x3 conv).

At 3 input channels and 1000 classes the trainable parameter counts equal torchvision's:
11,689,512 / 21,797,672 / 25,557,032. Keras's ResNet50 is the original v1
(`stride_in_1x1=True`, `padding='symmetric'`, bn_epsilon=1.001e-5; its convolution biases fold
into the BatchNorm means): with its weights (`jaxgenre.import_weights resnet50`) the outputs
equal Keras's (tests/test_keras_weights.py).
"""
import jax
from flax import nnx

from jaxgenre.models.ops import pooling
from jaxgenre.models.ops.layers import ConvBN, head


class BasicBlock(nnx.Module):
    expansion = 1

    def __init__(self, in_ch, ch, stride, *, stride_in_1x1, **kw):
        del stride_in_1x1  # no 1x1 convolution on the main path
        self.conv1 = ConvBN(in_ch, ch, (3, 3), strides=stride, **kw)
        self.conv2 = ConvBN(ch, ch, (3, 3), act=None, **kw)
        self.shortcut = (ConvBN(in_ch, ch, (1, 1), strides=stride, act=None, **kw)
                         if stride != 1 or in_ch != ch else None)

    def __call__(self, x, train):
        y = self.conv2(self.conv1(x, train), train)
        return nnx.relu(y + (self.shortcut(x, train) if self.shortcut is not None else x))


class Bottleneck(nnx.Module):
    expansion = 4

    def __init__(self, in_ch, ch, stride, *, stride_in_1x1, **kw):
        out = ch * self.expansion
        s1, s3 = (stride, 1) if stride_in_1x1 else (1, stride)
        self.conv1 = ConvBN(in_ch, ch, (1, 1), strides=s1, **kw)
        self.conv2 = ConvBN(ch, ch, (3, 3), strides=s3, **kw)
        self.conv3 = ConvBN(ch, out, (1, 1), act=None, **kw)
        self.shortcut = (ConvBN(in_ch, out, (1, 1), strides=stride, act=None, **kw)
                         if stride != 1 or in_ch != out else None)

    def __call__(self, x, train):
        y = self.conv3(self.conv2(self.conv1(x, train), train), train)
        return nnx.relu(y + (self.shortcut(x, train) if self.shortcut is not None else x))


class ResNet(nnx.Module):
    """ResNet on a log-mel image [B, T, n_mels, in_channels] -> logits [B, num_classes].

    padding: 'same' (TensorFlow's) or 'symmetric' (PyTorch's and Keras's: k // 2 zeros on both
    sides of every strided convolution and of the max pool). stride_in_1x1: the bottleneck's
    stride in its first 1x1 convolution (v1, Keras) instead of its 3x3 (v1.5, torchvision).
    """
    input_kind = "log_mel"

    def __init__(self, num_classes: int, *, block, layers, in_channels: int = 1,
                 dropout: float = 0.0, padding: str = "same", stride_in_1x1: bool = False,
                 bn_epsilon: float = 1e-5, dtype=None, rngs: nnx.Rngs):
        kw = {"padding": padding, "bn_epsilon": bn_epsilon, "dtype": dtype, "rngs": rngs}
        self.stem = ConvBN(in_channels, 64, (7, 7), strides=2, **kw)
        self.pool_padding = ((1, 1), (1, 1)) if padding == "symmetric" else "SAME"
        stages, ch = [], 64
        for i, n in enumerate(layers):
            width = 64 * 2 ** i
            for j in range(n):
                stages.append(block(ch, width, 2 if i > 0 and j == 0 else 1,
                                    stride_in_1x1=stride_in_1x1, **kw))
                ch = width * block.expansion
        self.blocks = nnx.List(stages)
        self.dropout = nnx.Dropout(dropout)
        self.dense = nnx.Linear(ch, num_classes, dtype=dtype, rngs=rngs)

    def __call__(self, x: jax.Array, *, train: bool, rngs: nnx.Rngs | None = None) -> jax.Array:
        x = self.stem(x, train)
        x = pooling.max_pool(x, 2, self.pool_padding)
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
