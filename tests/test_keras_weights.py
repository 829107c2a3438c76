"""Keras's ImageNet networks in our models: with RANDOM Keras weights saved by the test in the
format `tf.keras.applications` caches (no downloads), imported through the command line, our
MobileNetV2 and ResNet50 compute what Keras's do, on 3 channels and summed to 1 channel."""
import h5py
import numpy as np
import pytest
from flax import nnx
from jaxgenre.configs import mobilenet as mobilenet_config
from keras.src.legacy.saving import legacy_h5_format  # the format of Keras's weight cache

from jaxgenre import models
from jaxgenre.pretrained import import_dir, keras_weights
from jaxgenre.tools import import_weights
from tests import train_helpers as th

# Odd and even sides: strided layers pad differently on each (TensorFlow's 'same' vs symmetric).
_SHAPE = (67, 58, 3)
_ARCHS = {"mobilenet_v2": {"alpha": 0.35}, "resnet50": {}}


def _randomise(model, seed: int) -> None:
    """Every weight random (BatchNorm statistics and biases too), so none matches by default;
    scaled so activations stay O(1) through 50 layers and logits O(1) to O(10), where an
    absolute 1e-4 is far above float32 rounding yet far below any wrong mapping."""
    rng = np.random.default_rng(seed)
    for layer in model.layers:
        values = []
        for w in layer.weights:
            name, shape = w.path.split("/")[-1], tuple(w.shape)
            if name == "kernel":
                fan_in = np.prod(shape[:-1]) if layer.__class__.__name__ != "DepthwiseConv2D" \
                    else np.prod(shape[:2])
                gain = 0.05 if layer.__class__.__name__ == "Dense" else 1.2
                values.append(rng.normal(0, gain / np.sqrt(fan_in), shape))
            elif name in ("gamma", "moving_variance"):
                values.append(rng.uniform(0.5, 1.5, shape))
            else:  # beta, moving_mean, bias
                values.append(rng.normal(0, 0.2, shape))
        if values:
            layer.set_weights([v.astype(np.float32) for v in values])


def _save_h5(model, path) -> str:
    with h5py.File(path, "w") as f:
        legacy_h5_format.save_weights_to_hdf5_group(f, model)
    return str(path)


@pytest.fixture(scope="module")
def keras_models(tmp_path_factory):
    """{arch: (Keras model with a 1000-class top, its .h5, and for MobileNetV2 the .h5 of
    another without top, named as Keras's cache names it, and that model)}."""
    tmp = tmp_path_factory.mktemp("keras")
    out = {}
    for i, (arch, kw) in enumerate(_ARCHS.items()):
        model = keras_weights.build_keras(arch, kw.get("alpha", 1.0), input_shape=_SHAPE)
        _randomise(model, i)
        out[arch] = (model, _save_h5(model, tmp / f"{arch}.h5"), None, None)
    no_top = keras_weights.build_keras("mobilenet_v2", 0.35, include_top=False)
    _randomise(no_top, 10)
    name = "mobilenet_v2_weights_tf_dim_ordering_tf_kernels_0.35_224_no_top.h5"
    out["mobilenet_v2"] = (*out["mobilenet_v2"][:2], _save_h5(no_top, tmp / name), no_top)
    return out


@pytest.fixture(scope="module")
def imported(keras_models, tmp_path_factory):
    """{(arch, channels or 'no_top'): import directory}: 3-channel imports by the library call
    (the command line writes 1 channel), the rest through the command line; MobileNetV2's
    import without top takes its alpha from the file name."""
    tmp = tmp_path_factory.mktemp("imports")
    out, argvs = {}, []
    for arch, (_, weights, no_top, _) in keras_models.items():
        alpha = _ARCHS[arch].get("alpha")
        out[arch, 3] = str(tmp / f"{arch}_3")
        import_weights.import_keras(arch, weights, out[arch, 3], alpha, in_channels=3)
        out[arch, 1], out[arch, "no_top"] = str(tmp / f"{arch}_1"), str(tmp / f"{arch}_no_top")
        argvs.append([arch, f"--weights={weights}", f"--out={out[arch, 1]}"]
                     + ([f"--alpha={alpha}"] if alpha else []))
        if no_top:
            argvs.append([arch, f"--weights={no_top}", f"--out={out[arch, 'no_top']}"])
    for code, log in th.cli_exits("jaxgenre.tools.import_weights", argvs):
        assert code == 0, log[-2000:]
    return out


def _ours(directory, x):
    model, _ = import_dir.load_model(directory)
    return np.asarray(nnx.jit(lambda m, x: m(x, train=False))(model, x))


@pytest.mark.parametrize("arch", list(_ARCHS))
def test_outputs_equal_keras(keras_models, imported, arch):
    model = keras_models[arch][0]
    rgb = np.random.default_rng(1).normal(0, 1, (2, *_SHAPE)).astype(np.float32)
    want = model(rgb, training=False).numpy()
    assert 0.2 < np.abs(want).max() < 50  # a meaningful scale for an absolute tolerance
    np.testing.assert_allclose(_ours(imported[arch, 3], rgb), want, rtol=0, atol=1e-4)
    # One channel: the RGB kernels summed see a grey image as Keras sees it replicated.
    grey = rgb[..., :1]
    want = model(np.repeat(grey, 3, axis=-1), training=False).numpy()
    np.testing.assert_allclose(_ours(imported[arch, 1], grey), want, rtol=0, atol=1e-4)


def test_import_without_top_starts_a_classifier_with_a_fresh_head(keras_models, imported,
                                                                  arch="mobilenet_v2"):
    directory = imported[arch, "no_top"]
    info = import_dir.read_info(directory)
    assert info["num_classes"] is None and info["model_kwargs"]["in_channels"] == 1
    assert info["model_kwargs"]["width"] == 0.35  # read from the Keras cache file's name
    state = import_dir.load(directory)
    assert "dense" not in state
    model = models.get(arch)(8, **info["model_kwargs"], rngs=nnx.Rngs(0))
    _, params, rest = models.split(model)
    params, rest, kept = import_dir.merge(params, rest, state, directory)
    assert kept == ["dense/bias", "dense/kernel"]
    kernel = keras_models[arch][3].get_layer("Conv1").get_weights()[0]
    np.testing.assert_allclose(nnx.to_pure_dict(params)["stem"]["conv"]["kernel"],
                               kernel.sum(axis=2, keepdims=True), rtol=1e-6)
    with pytest.raises(import_dir.ImportWeightsError, match="without a head"):
        import_dir.load_model(directory)


def test_imagenet_config_matches_the_import_and_refuses_another(imported):
    config = mobilenet_config.get_config("imagenet")
    config.model.init_from = imported["mobilenet_v2", "no_top"]
    config.model.width = 0.35
    import_dir.check_config(config, 22050)  # accepted: bn_epsilon and width as imported
    config.model.bn_epsilon = 1e-5
    with pytest.raises(import_dir.PretrainedError, match=r"model.bn_epsilon 1e-05 \(imported: "
                                                         r"0.001\)"):
        import_dir.check_config(config, 22050)
    plain = mobilenet_config.get_config()  # no bn_epsilon: the constructor's 1e-5, refused too
    plain.model.init_from, plain.model.width = config.model.init_from, 0.35
    with pytest.raises(import_dir.PretrainedError, match="model.bn_epsilon 1e-05"):
        import_dir.check_config(plain, 22050)


def test_bad_files_are_refused_by_name(keras_models, tmp_path):
    weights = keras_models["mobilenet_v2"][1]
    cases = [("resnet50", weights, None, "does not load into Keras's resnet50"),
             ("mobilenet_v2", weights, 1.0, r"with alpha 1.0 \(pass --alpha\)"),
             ("mobilenet_v2", str(tmp_path / "missing.h5"), None, "no such file"),
             ("vgg16", weights, None, "Unknown Keras architecture 'vgg16'")]
    for i, (arch, path, alpha, message) in enumerate(cases):
        with pytest.raises(import_dir.ImportWeightsError, match=message):
            import_weights.import_keras(arch, path, str(tmp_path / f"out{i}"), alpha)
