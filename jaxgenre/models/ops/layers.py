"""Small building blocks shared by the models."""
import jax
import jax.numpy as jnp
from flax import nnx

from jaxgenre.models.ops.conv import Conv2D
from jaxgenre.models.ops.depthwise import DepthwiseConv3x3


class ConvBN(nnx.Module):
    """Conv (no bias) -> BatchNorm -> optional activation, NHWC or NWC.

    `depthwise=True` (3x3, in_ch == out_ch) uses `DepthwiseConv3x3`, which XLA:CPU runs 5-10x
    faster than a grouped convolution. Other 2D convolutions are `Conv2D` (XLA's convolution
    with a faster kernel gradient on CPU). A 1x1 stride-1 convolution is a `Linear` over the
    channel axis (the same parameter count and initialisation): one matrix product, forward
    and backward, without the layout transposes XLA:CPU adds around a convolution.

    padding: 'same' (TensorFlow's: a strided convolution of an even input pads only after) or
    'symmetric' (kernel // 2 zeros on both sides, as PyTorch and Keras's ResNet50 pad). They
    differ only for strided 2D convolutions, the ones 'symmetric' pads explicitly.
    bn_epsilon: BatchNorm's, 1e-5 as PyTorch; Keras's MobileNetV2 uses 1e-3.
    """

    def __init__(self, in_ch: int, out_ch: int, kernel, strides=1, depthwise: bool = False,
                 act=nnx.relu, padding: str = "same", bn_epsilon: float = 1e-5, *, dtype,
                 rngs: nnx.Rngs):
        if padding not in ("same", "symmetric"):
            raise ValueError(f"Unknown padding {padding!r}; valid: 'same', 'symmetric'.")
        self.pad = None
        if padding == "symmetric" and strides > 1 and max(kernel) > 1:
            if depthwise or len(kernel) != 2:
                raise ValueError("padding='symmetric' is implemented for strided 2D convolutions "
                                 "only; use padding='same'.")
            self.pad = tuple((k // 2, k // 2) for k in kernel)
            self.conv = Conv2D(in_ch, out_ch, kernel, strides, "VALID", dtype=dtype, rngs=rngs)
        elif depthwise:
            self.conv = DepthwiseConv3x3(in_ch, strides, dtype=dtype, rngs=rngs)
        elif all(k == 1 for k in kernel) and strides == 1:
            self.conv = nnx.Linear(in_ch, out_ch, use_bias=False, dtype=dtype, rngs=rngs)
        elif len(kernel) == 2:
            self.conv = Conv2D(in_ch, out_ch, kernel, strides, dtype=dtype, rngs=rngs)
        else:
            self.conv = nnx.Conv(in_ch, out_ch, kernel, strides=strides, padding="SAME",
                                 use_bias=False, dtype=dtype, rngs=rngs)
        self.bn = nnx.BatchNorm(out_ch, momentum=0.9, epsilon=bn_epsilon, dtype=dtype, rngs=rngs)
        self.act = act

    def __call__(self, x: jax.Array, train: bool) -> jax.Array:
        shape, pointwise = x.shape, isinstance(self.conv, nnx.Linear)
        if pointwise:
            # [B, H, W, C] -> [B * H * W, C]: XLA:CPU runs the 2D products (forward and both
            # gradients) up to 2x faster than the same contraction over three batch axes.
            x = x.reshape(-1, shape[-1])
        elif self.pad is not None:
            x = jnp.pad(x, ((0, 0), *self.pad, (0, 0)))
        x = self.bn(self.conv(x), use_running_average=not train)
        x = self.act(x) if self.act is not None else x
        return x.reshape(*shape[:-1], x.shape[-1]) if pointwise else x


def head(x: jax.Array, dense: nnx.Linear, dropout: nnx.Dropout, train: bool,
         rngs: nnx.Rngs | None) -> jax.Array:
    """Global average pool over all spatial axes, dropout, logits in float32."""
    x = jnp.mean(x, axis=tuple(range(1, x.ndim - 1)))
    x = dropout(x, deterministic=not train, rngs=rngs)
    return dense(x).astype(jnp.float32)
