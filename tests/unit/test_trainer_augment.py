"""Augmentation teaches only plausible goods: small rotations, mirror about the vertical axis."""
from __future__ import annotations

import math
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np
import tensorflow as tf

from trainer.augment import random_augment, rotate

SIZE = 32


def _top_left_marked(n: int) -> tf.Tensor:
    """Dark image with a bright block in the top-left quadrant (asymmetric both ways)."""
    img = np.zeros((n, SIZE, SIZE, 1), np.float32)
    img[:, 4:12, 6:12] = 1.0
    return tf.constant(img)


def _centroid(images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    yy, xx = np.mgrid[0:SIZE, 0:SIZE]
    w = images[..., 0]
    total = w.sum(axis=(1, 2))
    return (w * yy).sum(axis=(1, 2)) / total, (w * xx).sum(axis=(1, 2)) / total


def test_never_turns_a_patch_upside_down() -> None:
    out = random_augment(_top_left_marked(64), tf.random.Generator.from_seed(0), math.pi / 8)
    cy, _ = _centroid(out.images.numpy())
    assert (cy < SIZE / 2).all(), "the top of a patch must stay at the top"


def test_mirrors_only_about_the_vertical_axis() -> None:
    out = random_augment(_top_left_marked(64), tf.random.Generator.from_seed(1), 0.0)
    _, cx = _centroid(out.images.numpy())
    mirrored = out.mirrored.numpy()
    assert mirrored.any() and (~mirrored).any()
    assert (cx[mirrored] > SIZE / 2).all() and (cx[~mirrored] < SIZE / 2).all()


def test_flip_can_be_disabled() -> None:
    out = random_augment(_top_left_marked(32), tf.random.Generator.from_seed(1), 0.0, vertical_flip=False)
    assert not out.mirrored.numpy().any()
    np.testing.assert_allclose(out.images.numpy(), _top_left_marked(32).numpy(), atol=1e-6)


def test_rotation_angles_stay_within_the_bound() -> None:
    bound = math.pi / 8
    out = random_augment(_top_left_marked(512), tf.random.Generator.from_seed(2), bound)
    angles = out.angles.numpy()
    assert np.abs(angles).max() <= bound
    assert np.abs(angles).max() > 0.8 * bound  # the range is used, not just zero


def test_rotate_turns_a_line_by_the_given_angle() -> None:
    img = np.zeros((1, 65, 65, 1), np.float32)
    img[0, 32, 8:57] = 1.0  # horizontal line through the centre
    angle = math.pi / 8
    out = rotate(tf.constant(img), tf.constant([angle], tf.float32)).numpy()[0, ..., 0]
    yy, xx = np.nonzero(out > 0.3)
    slope = np.polyfit(xx - 32.0, yy - 32.0, 1)[0]
    assert abs(abs(math.atan(slope)) - angle) < 0.05
    np.testing.assert_allclose(rotate(tf.constant(img), tf.zeros([1])).numpy(), img, atol=1e-6)
