"""Perlin-shaped synthetic defects with their masks: what the segmentation head learns from.

GRD-Net (the paper's predecessor) and DRAEM add a small discriminative network that
learns *where* a patch was changed, from good patches changed on purpose. The change
must look like what a defect does to a back-lit plastic vial, without copying any
kind from the simulator's library: a foreign body or a burn absorbs light (the patch
darkens, multiplied by 1 - c inside the shape); a dent or missing plastic lets more
through (it brightens towards white). Shapes come from Perlin noise at two scales:

- a coarse field (2-4 cells per side) picks one or two places in the patch;
- a fine field (8-64 cells) thresholded inside them gives blobs of 2-30 px; or, for a
  share of patches, its zero contour, which is a thin wandering line (a scratch-like
  stroke, 1-3 px wide).

Contrast is drawn from ``contrast`` (down to a few percent, below the sensor noise of
the faintest ones: the head must learn to say "not sure" there). The mask is 1 where
the shape's weight is at least one half, so it marks what a line engineer would draw
round the change. Resolutions are given for a 256 px patch and scaled with the patch,
so the defects keep their size in pixels. Randomness comes from a seeded tf.random.Generator.
"""
from __future__ import annotations

from typing import NamedTuple, Sequence

import tensorflow as tf

from trainer.perlin import _multi_resolution_noise


REFERENCE_SIZE = 256  # patch side the resolutions below are given for


class SyntheticDefects(NamedTuple):
    images: tf.Tensor  # [B, P, P, 1] in [0, 1], changed where mask is 1
    mask: tf.Tensor    # [B, P, P, 1], 0 or 1


def _soft_step(field: tf.Tensor, threshold: tf.Tensor, width: float) -> tf.Tensor:
    return tf.clip_by_value((field - threshold) / width, 0.0, 1.0)


def _in_pixels(resolutions: Sequence[int], size: int) -> tuple[int, ...]:
    """Resolutions are given for a 256 px patch: keep their cells the same size in pixels."""
    return tuple(sorted({max(1, round(r * size / REFERENCE_SIZE)) for r in resolutions}))


def synthetic_defects(
    x: tf.Tensor,
    rng: tf.random.Generator,
    probability: float = 0.6,
    coarse_resolutions: Sequence[int] = (2, 4),
    fine_resolutions: Sequence[int] = (8, 16, 32, 64),
    contrast: tuple[float, float] = (0.04, 0.8),
    brighten_share: float = 0.25,
    stroke_share: float = 0.25,
) -> SyntheticDefects:
    """Change a share ``probability`` of the patches of a batch [B, P, P, 1]; see the module docstring."""
    x = tf.cast(x, tf.float32)
    batch = tf.shape(x)[0]
    size = int(x.shape[1])
    coarse = _multi_resolution_noise(batch, size, _in_pixels(coarse_resolutions, size), rng)
    fine = _multi_resolution_noise(batch, size, _in_pixels(fine_resolutions, size), rng)
    # Coarse: the top of the field, never empty (threshold at most just under its maximum).
    coarse_max = tf.reduce_max(coarse, axis=[1, 2], keepdims=True)
    place = _soft_step(coarse, tf.minimum(rng.uniform((batch, 1, 1), 0.4, 0.8), coarse_max - 0.1), 0.1)
    # Fine: blobs (field above a threshold) or a stroke (near its zero contour).
    blob = _soft_step(fine, rng.uniform((batch, 1, 1), 0.2, 0.6), 0.15)
    stroke = _soft_step(-tf.abs(fine), -rng.uniform((batch, 1, 1), 0.02, 0.08), 0.03)
    is_stroke = rng.uniform((batch, 1, 1)) < stroke_share
    shape = place * tf.where(is_stroke, stroke, blob)
    applied = tf.cast(rng.uniform((batch, 1, 1)) < probability, tf.float32)
    weight = (shape * applied)[..., None]
    c = rng.uniform((batch, 1, 1, 1), contrast[0], contrast[1])
    darker = x * (1.0 - c * weight)
    brighter = x + c * weight * (1.0 - x)
    bright = rng.uniform((batch, 1, 1, 1)) < brighten_share
    images = tf.where(bright, brighter, darker)
    return SyntheticDefects(images, tf.cast(weight >= 0.5, tf.float32))
