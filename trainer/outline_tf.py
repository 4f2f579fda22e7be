"""The outline measurement of vialguard.outline in TensorFlow, for the served graph (tested against numpy).

Same arithmetic, written for tf2onnx: the parabola's vertex from one-hot sums around the argmax, rows without
an outline as a mask instead of NaN, and the 15-row running median as a sort of each row's window
(edge rows repeated), whose middle value is numpy's median of an odd count.
"""
from __future__ import annotations

import numpy as np
import tensorflow as tf

from vialguard.local_score import PatchLayout
from vialguard.outline import EDGE_ROWS_SKIPPED, HIGH_PASS_ROWS, MIN_EDGE_STEP, OutlineModel


def edge_columns_tf(images: tf.Tensor, min_step: float = MIN_EDGE_STEP) -> tuple[tf.Tensor, tf.Tensor]:
    """[..., H, W] -> (edge columns [..., 2, H], found [..., 2, H] bool): vialguard.outline.edge_columns."""
    gradient = tf.abs(images[..., 1:] - images[..., :-1])
    half = gradient.shape[-1] // 2
    columns, found = [], []
    for part, offset in ((gradient[..., :half], 0), (gradient[..., half:], half)):
        width = part.shape[-1]
        peak = tf.clip_by_value(tf.argmax(part, axis=-1, output_type=tf.int32), 1, width - 2)
        # The values around the peak by one-hot sums (exact: x * 1 plus zeros): tf2onnx writes a batched
        # gather over so many axes as an invalid Transpose.
        left, centre, right = (tf.reduce_sum(part * tf.one_hot(peak + d, width, dtype=part.dtype), axis=-1)
                               for d in (-1, 0, 1))
        curvature = left - 2.0 * centre + right
        safe = tf.where(curvature == 0, tf.ones_like(curvature), curvature)
        vertex = tf.where(curvature != 0, tf.clip_by_value(0.5 * (left - right) / safe, -0.5, 0.5),
                          tf.zeros_like(curvature))
        columns.append(tf.cast(peak + offset, tf.float32) + vertex)
        found.append(centre >= min_step)
    return tf.stack(columns, axis=-2), tf.stack(found, axis=-2)


def running_median_tf(x: tf.Tensor, rows: int = HIGH_PASS_ROWS) -> tf.Tensor:
    """Median of [..., H] over ``rows`` rows (odd), edge rows repeated: vialguard.outline.running_median."""
    h = x.shape[-1]
    half = rows // 2
    index = np.clip(np.arange(h)[:, None] + np.arange(-half, half + 1)[None, :], 0, h - 1).astype(np.int32)
    windows = tf.gather(x, tf.constant(index), axis=-1)                  # [..., H, rows]
    return tf.sort(windows, axis=-1)[..., half]


def outline_deviation_tf(patches: tf.Tensor, layout: PatchLayout, regions: tuple[int, ...]) -> tf.Tensor:
    """[A * F*V*R, P, P, 1] in [0, 1] -> [A, V, R', 2, P]: vialguard.outline.outline_deviation per acquisition."""
    p = patches.shape[1]
    x = tf.reshape(patches, [-1, layout.frames, layout.vials, layout.regions, p, p])
    x = tf.gather(x, list(regions), axis=3)                              # [A, F, V, R', P, P]
    edges, found = edge_columns_tf(x)                                    # [A, F, V, R', 2, P]
    weight = tf.cast(found, tf.float32)
    count = tf.reduce_sum(weight, axis=1)
    seen = count > 0
    mean = tf.reduce_sum(edges * weight, axis=1) / tf.maximum(count, 1.0)
    seen_f = tf.cast(seen, tf.float32)
    level = tf.reduce_sum(mean * seen_f, axis=-1, keepdims=True) / tf.maximum(
        tf.reduce_sum(seen_f, axis=-1, keepdims=True), 1.0)
    filled = tf.where(seen, mean, level + tf.zeros_like(mean))
    return tf.where(seen, tf.abs(filled - running_median_tf(filled)), tf.zeros_like(filled))


def outline_scores_tf(patches: tf.Tensor, model: OutlineModel, layout: PatchLayout) -> tf.Tensor:
    """[A * F*V*R, P, P, 1] -> [A, V, R']: OutlineModel.scores of each acquisition's deviations."""
    deviation = outline_deviation_tf(patches, layout, model.regions)
    z = (deviation - tf.constant(model.mean, tf.float32)) / tf.constant(model.spread, tf.float32)
    return tf.reduce_max(z[..., EDGE_ROWS_SKIPPED:-EDGE_ROWS_SKIPPED], axis=[-1, -2])
