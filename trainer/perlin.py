"""Perlin-noise perturbation P_q of paper eq. 1 and 6, batched in TensorFlow.

With probability q per patch, a blob-shaped region M (a thresholded Perlin field) is
painted over with a second Perlin texture at a random opacity:

    X_n = X + M * opacity * (T - X)        (a convex blend, so X_n stays in [0, 1])
    N   = |X_n - X|                        (the perturbation alone)

M is 1 where the patch was perturbed and 0 elsewhere, so X_n equals X wherever M is 0.
N is "the Perlin noise generated on a black image" of the paper: on X = 0 it is exactly
M * opacity * T. Defining it as |X_n - X| makes the noise loss L1(|X_n - X_hat|, N)
zero for the perfect reconstruction X_hat = X, which is what it is meant to reward.
A patch drawn for perturbation always gets a non-empty M (the threshold never exceeds
the field's maximum), so q is the true share of perturbed patches.

Randomness comes from a tf.random.Generator (seeded, checkpointed with the run, and
split into independent streams per replica under tf.distribute): same seed, same noise.
"""
from __future__ import annotations

import math
from typing import NamedTuple, Sequence

import tensorflow as tf


class Perturbation(NamedTuple):
    perturbed: tf.Tensor  # X_n [B, P, P, 1]
    mask: tf.Tensor       # M   [B, P, P, 1], 0 or 1
    noise: tf.Tensor      # N   [B, P, P, 1], |X_n - X|


def _fade(t: tf.Tensor) -> tf.Tensor:
    return t * t * t * (t * (t * 6.0 - 15.0) + 10.0)


def perlin_noise(batch: tf.Tensor, size: int, resolution: int, rng: tf.random.Generator) -> tf.Tensor:
    """2-D gradient noise [B, size, size], values in about [-1, 1], `resolution` cells per side."""
    angles = rng.uniform((batch, resolution + 1, resolution + 1), 0.0, 2.0 * math.pi)
    grads = tf.stack([tf.cos(angles), tf.sin(angles)], axis=-1)  # [B, r+1, r+1, (gy, gx)]
    coords = tf.range(size, dtype=tf.float32) * (resolution / size)
    cell = tf.cast(tf.floor(coords), tf.int32)
    frac = coords - tf.floor(coords)

    def corner(dy: int, dx: int) -> tf.Tensor:
        g = tf.gather(tf.gather(grads, cell + dy, axis=1), cell + dx, axis=2)  # [B, H, W, 2]
        off_y = (frac - dy)[None, :, None]
        off_x = (frac - dx)[None, None, :]
        return g[..., 0] * off_y + g[..., 1] * off_x

    u = _fade(frac)[None, None, :]
    v = _fade(frac)[None, :, None]
    top = corner(0, 0) + u * (corner(0, 1) - corner(0, 0))
    bottom = corner(1, 0) + u * (corner(1, 1) - corner(1, 0))
    return math.sqrt(2.0) * (top + v * (bottom - top))


def _multi_resolution_noise(
    batch: tf.Tensor, size: int, resolutions: Sequence[int], rng: tf.random.Generator
) -> tf.Tensor:
    """Perlin noise whose resolution is drawn per patch from `resolutions`."""
    fields = tf.stack([perlin_noise(batch, size, r, rng) for r in resolutions], axis=1)  # [B, R, H, W]
    pick = rng.uniform((batch,), 0, len(resolutions), dtype=tf.int32)
    return tf.reduce_sum(fields * tf.one_hot(pick, len(resolutions))[:, :, None, None], axis=1)


def perturb(
    x: tf.Tensor,
    rng: tf.random.Generator,
    probability: float = 0.75,
    resolutions: Sequence[int] = (2, 4, 8),
    threshold: float = 0.5,
    opacity: tuple[float, float] = (0.5, 1.0),
) -> Perturbation:
    """P_q(X) for a batch [B, P, P, 1] in [0, 1]: (X_n, M, N), see the module docstring."""
    x = tf.cast(x, tf.float32)
    batch = tf.shape(x)[0]
    size = int(x.shape[1])
    field = _multi_resolution_noise(batch, size, resolutions, rng)
    texture = tf.clip_by_value(0.5 * (_multi_resolution_noise(batch, size, resolutions, rng) + 1.0), 0.0, 1.0)
    per_patch_max = tf.reduce_max(field, axis=[1, 2], keepdims=True)
    mask = tf.cast(field >= tf.minimum(threshold, per_patch_max), tf.float32)
    applied = tf.cast(rng.uniform((batch,)) < probability, tf.float32)
    mask = (mask * applied[:, None, None])[..., None]
    alpha = rng.uniform((batch, 1, 1, 1), opacity[0], opacity[1])
    perturbed = x + mask * alpha * (texture[..., None] - x)
    return Perturbation(perturbed, mask, tf.abs(perturbed - x))
