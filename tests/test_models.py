"""Models: parameter counts against the reference implementations, shapes, depthwise conv."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from jaxgenre import models
from jaxgenre.models.ops import conv, depthwise, pooling


def _count(model, kinds=(nnx.Param,)):
    return sum(x.size for kind in kinds for x in jax.tree.leaves(nnx.state(model, kind)))


@pytest.mark.parametrize("name,expected", [
    ("resnet18", 11_689_512), ("resnet34", 21_797_672), ("resnet50", 25_557_032)])
def test_resnet_parameter_counts_match_torchvision(name, expected):
    model = nnx.eval_shape(lambda: models.get(name)(1000, in_channels=3, rngs=nnx.Rngs(0)))
    assert _count(model) == expected


@pytest.mark.parametrize("channels,classes,width", [(1, 8, 1.0), (3, 1000, 1.0), (1, 16, 0.5)])
def test_mobilenet_v2_parameter_count_matches_keras(channels, classes, width):
    import tensorflow as tf
    keras = tf.keras.applications.MobileNetV2(weights=None, input_shape=(96, 96, channels),
                                              classes=classes, alpha=width)
    ours = nnx.eval_shape(lambda: models.get("mobilenet_v2")(
        classes, in_channels=channels, width=width, rngs=nnx.Rngs(0)))
    # Keras counts BatchNorm moving statistics as parameters: compare like with like.
    assert _count(ours, (nnx.Param, nnx.BatchStat)) == keras.count_params()


@pytest.mark.parametrize("name", models.NAMES)
def test_every_model_gives_logits_for_its_input(name):
    cls = models.get(name)
    shape = {"log_mel": (2, 32, 128, 1), "mfcc": (2, 32, 20, 1), "waveform": (2, 8000)}[cls.input_kind]
    model = cls(5, rngs=nnx.Rngs(0))
    x = jax.random.normal(jax.random.key(1), shape)
    # Jitted: one compilation per mode instead of one per op (MobileNetV2 eagerly took 28 s).
    forward = nnx.jit(lambda model, x, **kw: model(x, **kw), static_argnames="train")
    train_logits = forward(model, x, train=True, rngs=nnx.Rngs(dropout=2))
    eval_logits = forward(model, x, train=False)
    assert train_logits.shape == eval_logits.shape == (2, 5)
    assert eval_logits.dtype == jnp.float32 and bool(jnp.isfinite(eval_logits).all())
    # The logits depend on each example's own input: a model that ignored it, or mixed the
    # batch at inference, would fail.
    other = forward(model, x.at[1].multiply(-0.5), train=False)
    assert float(jnp.abs(other[0] - eval_logits[0]).max()) == 0.0
    assert float(jnp.abs(other[1] - eval_logits[1]).max()) > 1e-4


def test_unknown_model_lists_the_registered_ones():
    with pytest.raises(ValueError, match="mobilenet_v2.*resnet18"):
        models.get("mobilenet")


@pytest.mark.parametrize("stride,hw", [(1, (9, 8)), (2, (9, 8)), (2, (8, 7)), (1, (5, 5))])
def test_depthwise_equals_grouped_convolution_and_its_gradients(stride, hw):
    x = jax.random.normal(jax.random.key(0), (2, *hw, 6))
    k = jax.random.normal(jax.random.key(1), (3, 3, 1, 6))

    def grouped(x, k):
        return jax.lax.conv_general_dilated(x, k, (stride, stride), "SAME",
                                            dimension_numbers=("NHWC", "HWIO", "NHWC"),
                                            feature_group_count=6, precision="highest")

    ours = lambda x, k: depthwise.depthwise_conv3x3(x, k, stride)
    other_platforms = lambda x, k: depthwise.grouped_conv3x3(x, k, stride)
    loss = lambda f: lambda x, k: jnp.sum(jnp.sin(f(x, k)))
    for form in (ours, other_platforms):
        np.testing.assert_allclose(form(x, k), grouped(x, k), rtol=1e-5, atol=1e-5)
        for a, b in zip(jax.grad(loss(form), (0, 1))(x, k),
                        jax.grad(loss(grouped), (0, 1))(x, k)):
            np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-4)


def test_depthwise_accumulates_bfloat16_inputs_in_float32():
    """256 + eight 1s: bfloat16 sums stop at 256 (its spacing there is 2); float32 gets 264,
    which bfloat16 holds exactly. Both platform forms, and the module (whichever it picks)."""
    x = jnp.ones((1, 3, 3, 1), jnp.bfloat16).at[0, 0, 0, 0].set(256)
    k = jnp.ones((3, 3, 1, 1), jnp.bfloat16)
    for form in (depthwise.depthwise_conv3x3, depthwise.grouped_conv3x3):
        out = form(x, k, 1)
        assert out.dtype == jnp.bfloat16 and float(out[0, 1, 1, 0]) == 264.0
    module = depthwise.DepthwiseConv3x3(1, dtype=jnp.bfloat16, rngs=nnx.Rngs(0))
    module.kernel.value = jnp.ones((3, 3, 1, 1))
    assert float(module(x)[0, 1, 1, 0]) == 264.0
    dk = jax.grad(lambda k: depthwise.depthwise_conv3x3(x, k, 1).astype(jnp.float32).sum())(k)
    assert float(dk[1, 1, 0, 0]) == 264.0  # the centre tap sees every input once


def _conv_case(kernel, stride, hw, padding):
    """(x [2, *hw, 3], kernel [*kernel, 3, 5], XLA's convolution of them at full precision)."""
    x = jax.random.normal(jax.random.key(0), (2, *hw, 3))
    k = jax.random.normal(jax.random.key(1), (*kernel, 3, 5))

    def xla(x, k):
        return jax.lax.conv_general_dilated(x, k, (stride, stride), padding,
                                            dimension_numbers=("NHWC", "HWIO", "NHWC"),
                                            precision="highest")
    return x, k, xla


def _assert_equal_with_gradients(ours, xla, x, k, loss):
    np.testing.assert_allclose(ours(x, k), xla(x, k), rtol=1e-5, atol=1e-5)
    for a, b in zip(jax.grad(loss(ours), (0, 1))(x, k), jax.grad(loss(xla), (0, 1))(x, k)):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("kernel,stride,hw,padding", [
    ((3, 3), 1, (9, 8), "SAME"), ((3, 3), 2, (9, 8), "SAME"), ((7, 7), 2, (8, 7), "SAME"),
    ((1, 1), 2, (5, 6), "SAME"), ((7, 7), 2, (14, 13), "VALID"), ((3, 3), 2, (8, 9), "VALID")])
def test_conv2d_equals_xla_convolution_and_its_gradients(kernel, stride, hw, padding):
    x, k, xla = _conv_case(kernel, stride, hw, padding)
    _assert_equal_with_gradients(lambda x, k: conv.conv2d(x, k, stride, padding), xla, x, k,
                                 lambda f: lambda x, k: jnp.sum(jnp.sin(f(x, k))))
    # The CPU kernel gradient on its own (the custom VJP selects it only on CPU): over the whole
    # batch at once, and one example at a time (what larger feature maps get), summed.
    g = jnp.cos(xla(x, k))
    want = jax.vjp(xla, x, k)[1](g)[1]
    for chunk_bytes in (conv.CHUNK_BYTES, 1):
        np.testing.assert_allclose(conv.kernel_grad_im2col(x, g, k.shape, stride, padding,
                                                           chunk_bytes), want, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("kernel,stride,hw,padding", [
    ((4, 4), 2, (9, 8), "SAME"), ((3, 3), 1, (7, 9), "SAME"), ((4, 4), 2, (11, 10), "VALID"),
    ((3, 3), 3, (11, 13), "SAME")])
def test_space_to_depth_conv_equals_xla_convolution_to_second_order(kernel, stride, hw, padding):
    """The discriminator's convolution: the value, both gradients, and the gradient of an
    R1-style penalty (the squared input gradient) with respect to the kernel."""
    x, k, xla = _conv_case(kernel, stride, hw, padding)
    ours = lambda x, k: conv.space_to_depth_conv(x, k, stride, padding)
    loss = lambda f: lambda x, k: jnp.sum(jnp.tanh(f(x, k)))
    _assert_equal_with_gradients(ours, xla, x, k, loss)

    def penalty(f):
        return lambda k, x: jnp.sum(jax.grad(loss(f))(x, k) ** 2)

    want = jax.grad(penalty(xla))(k, x)
    assert float(jnp.abs(want).max()) > 1.0  # a second-order term worth comparing
    np.testing.assert_allclose(jax.grad(penalty(ours))(k, x), want, rtol=1e-4, atol=1e-3)


def test_bfloat16_compute_keeps_float32_parameters_and_logits(name="mfcc_cnn"):
    """Same float32 parameters, computed in bfloat16: logits close to the float32 model's but
    not equal (a dtype that was ignored would give equal ones), in float32. (A small model:
    the larger ones share its conv / BatchNorm / dense dtype handling and take 40 s here.)"""
    x = jax.random.normal(jax.random.key(1), (2, 32, 20, 1))
    half = models.get(name)(4, dtype=jnp.bfloat16, rngs=nnx.Rngs(0))
    full = models.get(name)(4, rngs=nnx.Rngs(0))
    logits, reference = half(x, train=False), full(x, train=False)
    assert logits.dtype == jnp.float32 and bool(jnp.isfinite(logits).all())
    assert {x.dtype for x in jax.tree.leaves(nnx.state(half, nnx.Param))} == {jnp.dtype("float32")}
    gap = float(jnp.abs(logits - reference).max())
    assert 0.0 < gap <= 0.05 * float(jnp.abs(reference).max()) + 1e-3, gap


@pytest.mark.parametrize("stride,padding,hw", [(2, "SAME", (9, 8)), (2, ((1, 1), (1, 1)), (8, 9)),
                                               (1, "SAME", (5, 6))])
def test_max_pool_equals_reduce_window_and_its_gradient(stride, padding, hw):
    x = jax.random.normal(jax.random.key(0), (2, *hw, 3))  # no ties: one maximum per window
    xla = lambda x: nnx.max_pool(x, (3, 3), strides=(stride, stride), padding=padding)
    ours = lambda x: pooling.max_pool3x3(x, stride, padding)
    np.testing.assert_array_equal(ours(x), xla(x))
    loss = lambda f: lambda x: jnp.sum(jnp.sin(f(x)) * jnp.arange(f(x).size).reshape(f(x).shape))
    np.testing.assert_allclose(jax.grad(loss(ours))(x), jax.grad(loss(xla))(x), rtol=1e-6)
    np.testing.assert_array_equal(pooling.max_pool(x, stride, padding), xla(x))


def test_max_pool_gradient_goes_to_the_first_of_tied_maxima():
    x = jnp.zeros((1, 3, 3, 1))  # after a ReLU whole windows are 0
    dx = jax.grad(lambda x: pooling.max_pool3x3(x, 2, ((1, 1), (1, 1))).sum())(x)
    # Output (0, 0)'s window covers x[0:2, 0:2], (0, 1)'s x[0:2, 1:3], and so on: each sends
    # its gradient to the top-left element of its window, as PyTorch does.
    np.testing.assert_array_equal(dx[0, :, :, 0], [[1, 1, 0], [1, 1, 0], [0, 0, 0]])
