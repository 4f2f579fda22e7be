"""The Perlin perturbation P_q: X_n differs from X only under M, and N is what was added."""
from __future__ import annotations

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np
import tensorflow as tf

from trainer.perlin import perlin_noise, perturb


def _batch(n: int = 16, size: int = 32) -> tf.Tensor:
    return tf.constant(np.random.default_rng(0).random((n, size, size, 1)), tf.float32)


def test_probability_zero_leaves_every_patch_unchanged() -> None:
    x = _batch()
    out = perturb(x, tf.random.Generator.from_seed(0), probability=0.0)
    np.testing.assert_array_equal(out.perturbed.numpy(), x.numpy())
    assert float(tf.reduce_max(out.mask)) == 0.0 and float(tf.reduce_max(out.noise)) == 0.0


def test_probability_one_perturbs_every_patch_only_where_the_mask_is_set() -> None:
    x = _batch()
    out = perturb(x, tf.random.Generator.from_seed(1), probability=1.0)
    mask, xn, noise = out.mask.numpy(), out.perturbed.numpy(), out.noise.numpy()
    assert set(np.unique(mask)) <= {0.0, 1.0}
    assert (mask.reshape(len(mask), -1).max(axis=1) == 1.0).all(), "every patch must carry noise"
    np.testing.assert_array_equal(xn[mask == 0], x.numpy()[mask == 0])
    assert (np.abs(xn - x.numpy())[mask == 1] > 0).any()
    np.testing.assert_allclose(noise, np.abs(xn - x.numpy()), atol=1e-6)
    assert xn.min() >= 0.0 and xn.max() <= 1.0


def test_share_of_perturbed_patches_follows_q() -> None:
    out = perturb(_batch(400, 16), tf.random.Generator.from_seed(2), probability=0.75, resolutions=(2,))
    share = float(np.mean(out.mask.numpy().reshape(400, -1).max(axis=1)))
    assert 0.68 < share < 0.82


def test_noise_on_a_black_image_is_the_perturbation_itself() -> None:
    black = tf.zeros((4, 32, 32, 1))
    out = perturb(black, tf.random.Generator.from_seed(3), probability=1.0)
    np.testing.assert_allclose(out.noise.numpy(), out.perturbed.numpy(), atol=1e-7)


def test_same_seed_same_noise_different_seed_different_noise() -> None:
    x = _batch(4)
    a = perturb(x, tf.random.Generator.from_seed(5), 1.0).perturbed.numpy()
    b = perturb(x, tf.random.Generator.from_seed(5), 1.0).perturbed.numpy()
    c = perturb(x, tf.random.Generator.from_seed(6), 1.0).perturbed.numpy()
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)


def test_perlin_field_is_smooth_and_bounded() -> None:
    field = perlin_noise(tf.constant(2), 64, 4, tf.random.Generator.from_seed(0)).numpy()
    assert np.abs(field).max() <= 1.0 + 1e-5
    assert np.abs(np.diff(field, axis=1)).max() < 0.3  # gradient noise, not white noise
    np.testing.assert_allclose(field[:, ::16, ::16], 0.0, atol=1e-6)  # zero on the lattice
