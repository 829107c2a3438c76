"""On-device augmentation: each op does what its docstring says, per example, from its key."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxgenre.audio import augment
from jaxgenre.core import sharding

B, T, F = 6, 40, 32


def _ramp(axis: int) -> jax.Array:
    """[B, T, F, 1] float32 equal to the frame index (axis 1) or the band index (axis 2)."""
    shape = [B, T, F, 1]
    r = jnp.arange(shape[axis], dtype=jnp.float32).reshape([-1 if a == axis else 1 for a in range(4)])
    return jnp.broadcast_to(r, shape)


def test_random_gain_stays_within_the_range_and_differs_per_example():
    audio = jnp.ones((B, 100))
    out = augment.random_gain(jax.random.key(0), audio, 6.0)
    db = 20 * np.log10(np.asarray(out[:, 0]))
    assert np.all(np.abs(db) <= 6.0 + 1e-4)
    assert np.ptp(db) > 1.0
    np.testing.assert_allclose(out, out[:, :1] * np.ones((1, 100)), rtol=1e-6)
    assert augment.random_gain(jax.random.key(0), audio, 0.0) is audio


def test_spec_augment_masks_whole_bands_and_frames_within_the_widths():
    x = jnp.ones((B, T, F, 1))
    out = np.asarray(augment.spec_augment(jax.random.key(1), x, 1, 5, 1, 7))[..., 0]
    for example in out:
        masked_bands = np.all(example == 0, axis=0)
        masked_frames = np.all(example == 0, axis=1)
        assert masked_bands.sum() <= 5 and masked_frames.sum() <= 7
        # Everything zero lies in a masked band or a masked frame; the rest is untouched.
        explained = masked_bands[None, :] | masked_frames[:, None]
        np.testing.assert_array_equal(example == 0, explained)
    assert (out == 0).any()


def test_mixup_keeps_the_own_label_dominant_and_mixes_inputs_like_labels():
    x = jnp.eye(B)[:, :, None] * jnp.ones((1, 1, 3))
    labels = jnp.eye(B)
    mx, ml = augment.mixup(jax.random.key(2), x, labels, 0.4)
    lam = np.diag(np.asarray(ml))
    assert np.all(lam >= 0.5) and np.all(lam <= 1.0)
    np.testing.assert_allclose(np.asarray(ml).sum(1), 1.0, rtol=1e-6)
    np.testing.assert_allclose(mx[..., 0], ml, rtol=1e-6)  # one-hot inputs: mixed like labels


def test_frequency_shift_moves_each_example_by_a_constant_within_the_range():
    x = _ramp(axis=2)
    out = np.asarray(augment.stretch_and_shift(jax.random.key(3), x, 0.0, 3.0))[..., 0]
    interior = slice(4, F - 4)  # bands that never reach the edge fill
    shift = out[:, :, interior] - np.arange(F)[interior]
    per_example = shift[:, 0, 0]
    np.testing.assert_allclose(shift, per_example[:, None, None] * np.ones_like(shift), atol=1e-4)
    assert np.all(np.abs(per_example) <= 3.0 + 1e-4)
    assert np.ptp(per_example) > 0.5  # drawn per example
    assert out.min() >= 0 and out.max() <= F - 1  # edges repeat the edge band, never zeros


def test_time_stretch_scales_time_by_a_factor_within_the_range():
    x = _ramp(axis=1)
    out = np.asarray(augment.stretch_and_shift(jax.random.key(4), x, 0.25, 0.0))[..., 0]
    assert out.min() >= 0 and out.max() <= T - 1  # reflection, never zeros
    slopes = []
    for example in out[:, :, 0]:
        d = np.diff(example)
        # Where the window meets the reflected edge the slope changes sign; elsewhere it is
        # the playback speed.
        slopes.append(np.median(d))
        assert np.mean(np.isclose(np.abs(d), np.abs(np.median(d)), atol=1e-3)) > 0.5
    slopes = np.asarray(slopes)
    assert np.all(np.abs(slopes) >= 1 / 1.25 - 1e-3) and np.all(np.abs(slopes) <= 1.25 + 1e-3)
    assert np.ptp(slopes) > 0.05


@pytest.mark.parametrize("stretch,shift", [(0.0, 0.0), (0.2, 4.0)])
def test_stretch_and_shift_keeps_shape_dtype_and_batch_sharding(stretch, shift):
    data = sharding.batch_sharding(sharding.make_mesh())
    x = jax.device_put(jnp.zeros((jax.device_count() * 2, T, F, 1), jnp.bfloat16), data)
    out = jax.jit(augment.stretch_and_shift, static_argnums=(2, 3))(jax.random.key(5), x,
                                                                    stretch, shift)
    assert out.shape == x.shape and out.dtype == x.dtype
    assert out.sharding.is_equivalent_to(data, out.ndim)


def test_diff_augment_rolls_cuts_and_shifts_each_example_and_passes_gradients_through():
    x = _ramp(1) + 0.01 * _ramp(2)  # frame index, band index in the decimals: positions readable
    key = jax.random.key(0)
    rolled = augment.diff_augment(key, x, ("roll",))
    starts = [int(rolled[b, 0, 0, 0]) for b in range(B)]
    for b, start in enumerate(starts):  # a circular time shift: the frames in order, any start
        np.testing.assert_allclose(rolled[b], jnp.roll(x[b], -start, axis=0), atol=1e-5)
    assert len(set(starts)) > 1  # each example its own shift
    cut = np.asarray(augment.diff_augment(key, x + 1.0, ("cutout",)))[..., 0]  # x + 1: no zeros
    for b in range(B):  # zeros only in whole frames and whole bands: one span of each, <= 1/4
        frames, bands = np.all(cut[b] == 0, axis=1), np.all(cut[b] == 0, axis=0)
        assert frames.sum() <= T // 4 and bands.sum() <= F // 4
        assert np.array_equal(cut[b] == 0, frames[:, None] | bands[None, :])
    assert (cut == 0).any()
    shifted = augment.diff_augment(key, x, ("gain",), gain=0.15) - x
    offsets = np.asarray(shifted[:, 0, 0, 0])
    np.testing.assert_allclose(shifted, offsets[:, None, None, None] + 0 * x, atol=1e-5)
    assert np.all(np.abs(offsets) <= 0.15) and len(set(offsets.round(6))) == B
    # Differentiable in x: the gradient of a sum is the mask of what survived.
    grad = jax.grad(lambda v: augment.diff_augment(key, v, ("roll", "cutout", "gain")).sum())(x)
    assert set(np.unique(np.asarray(grad))) <= {0.0, 1.0} and float(grad.mean()) > 0.5
    with pytest.raises(ValueError, match="Unknown DiffAugment op.*'flip'.*valid: roll, cutout"):
        augment.diff_augment(key, x, ("roll", "flip"))
