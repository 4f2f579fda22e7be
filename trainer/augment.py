"""Training-only augmentation of paper 6.2: small rotations and a vertical-axis flip.

Only what a good product can look like is allowed. A vial is symmetric about its
vertical axis, so mirroring it left <-> right (a flip about the vertical axis, the
paper's "vertical flip") gives a plausible good patch. Turning it upside down (a flip
about the horizontal axis, the paper's "horizontal flip") or rotating past pi/2 puts
the cap where the bottom belongs: that is an anomaly and must never be taught as good.
Rotations are drawn in [-max_rotation, max_rotation] (paper: pi/8).

The ops used here (ImageProjectiveTransformV3) are training-only: they never enter the
exported inspector graph.
"""
from __future__ import annotations

from typing import NamedTuple

import tensorflow as tf


class Augmented(NamedTuple):
    images: tf.Tensor   # [B, P, P, 1]
    angles: tf.Tensor   # [B] radians, counter-clockwise
    mirrored: tf.Tensor  # [B] bool: flipped about the vertical axis


def rotate(images: tf.Tensor, angles: tf.Tensor) -> tf.Tensor:
    """Rotate each image [B, H, W, C] about its centre by its angle (radians), reflecting at borders."""
    images = tf.cast(images, tf.float32)
    height = tf.cast(tf.shape(images)[1], tf.float32)
    width = tf.cast(tf.shape(images)[2], tf.float32)
    cos, sin = tf.cos(angles), tf.sin(angles)
    cx, cy = (width - 1.0) / 2.0, (height - 1.0) / 2.0
    # Output pixel (x, y) samples input (a0 x + a1 y + a2, b0 x + b1 y + b2): the inverse rotation.
    zeros = tf.zeros_like(angles)
    transforms = tf.stack(
        [cos, -sin, cx - cos * cx + sin * cy, sin, cos, cy - sin * cx - cos * cy, zeros, zeros], axis=1
    )
    rotated = tf.raw_ops.ImageProjectiveTransformV3(
        images=images,
        transforms=transforms,
        output_shape=tf.shape(images)[1:3],
        fill_value=0.0,
        interpolation="BILINEAR",
        fill_mode="REFLECT",
    )
    return tf.ensure_shape(rotated, images.shape)  # the raw op forgets the static shape


def random_augment(
    images: tf.Tensor,
    rng: tf.random.Generator,
    max_rotation: float,
    vertical_flip: bool = True,
) -> Augmented:
    """Mirror about the vertical axis with probability 1/2 (if enabled), then rotate by U(-max, max)."""
    batch = tf.shape(images)[0]
    angles = rng.uniform((batch,), -max_rotation, max_rotation)
    if vertical_flip:
        mirrored = rng.uniform((batch,)) < 0.5
    else:
        mirrored = tf.zeros((batch,), tf.bool)
    images = tf.where(mirrored[:, None, None, None], tf.reverse(images, axis=[2]), images)
    return Augmented(rotate(images, angles), angles, mirrored)
