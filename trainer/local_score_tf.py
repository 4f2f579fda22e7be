"""vialguard.local_score in TensorFlow, for the served `inspector` graph.

Same arithmetic as the numpy reference (tested against it): the 1 - SSIM map of the
one SSIM, arranged by patch position into [A, frames, vials, regions, h, w], the
per-pixel minimum over the frames when the version fuses them (smoothed before or
after it, as the version says), normalised by the
region's good statistics (constants baked into the graph), maximum over the pixels,
and the fused score given back to each frame's patch. Only reshape, min/max,
subtract/divide and tile: tf2onnx exports them as plain ONNX ops.
"""
from __future__ import annotations

import tensorflow as tf

from trainer.separable_tf import filter_side_by_side
from trainer.ssim_tf import ssim_map, ssim_map_grouped
from vialguard.local_score import LocalScoreModel, smoothing_kernel


def anomaly_map(x: tf.Tensor, x_hat: tf.Tensor, group: int | None = None) -> tf.Tensor:
    """1 - SSIM map per patch: [N, P, P, 1] x 2 -> [N, P-10, P-10].

    With ``group`` (N a multiple of it: whole acquisitions), the same map computed with
    the patches side by side (trainer.ssim_tf.ssim_map_grouped), 5x faster served.
    """
    ssim = ssim_map(x, x_hat) if group is None else ssim_map_grouped(x, x_hat, group)
    return 1.0 - ssim[..., 0]


def smooth_tf(maps: tf.Tensor, sigma: float, group: int = 1) -> tf.Tensor:
    """vialguard.local_score.smooth: separable Gaussian of [N, h, w], zero-padded 'same'.

    ``group`` maps at a time (N a multiple of it) are the channels of one depthwise
    convolution (trainer.separable_tf): the same sums; served with an acquisition's 60
    maps side by side, 4 ms instead of 34.
    """
    kernel = smoothing_kernel(sigma)
    if kernel.size == 1:
        return maps
    return filter_side_by_side(maps, kernel, group, "SAME")


def local_score_tf(maps: tf.Tensor, model: LocalScoreModel) -> tf.Tensor:
    """Local score [N] from 1 - SSIM maps [N, h, w] of whole acquisitions in patch order."""
    lay = model.layout
    h, w = model.map_shape
    after = model.smooth_after_fusion and model.fuse_frames
    if not after:
        maps = smooth_tf(maps, model.smooth_sigma, lay.per_acquisition)
    stacked = tf.reshape(maps, [-1, lay.frames, lay.vials, lay.regions, h, w])
    if model.fuse_frames:
        stacked = tf.reduce_min(stacked, axis=1, keepdims=True)
    if after:  # one map per vial and region: an acquisition's 20 side by side
        per = lay.vials * lay.regions
        stacked = tf.reshape(smooth_tf(tf.reshape(stacked, [-1, h, w]), model.smooth_sigma, per),
                             [-1, 1, lay.vials, lay.regions, h, w])
    if model.row_scale is not None:  # each row's good tail (vialguard.local_score)
        stacked = stacked / tf.constant(model.row_scale[None, None, None, :, :, None])
    mean = tf.constant(model.mean[None, None, None])
    scale = tf.constant(model.scale[None, None, None])
    score = tf.reduce_max((stacked - mean) / scale, axis=[4, 5])  # [A, F or 1, V, R]
    if model.fuse_frames:
        score = tf.tile(score, [1, lay.frames, 1, 1])
    return tf.reshape(score, [-1])
