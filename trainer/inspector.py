"""The `inspector` graph: patches -> score and heatmap, generator fused with its scoring.

This is what Triton serves (DESIGN section 2): the reconstruction never leaves the
graph. Three outputs (names from vialguard.inspector_io): ``score``, the one the
decision uses (the local score of vialguard.local_score when the version has its
statistics, else phi); ``phi`` = 1 - SSIM with the trainer's one TensorFlow SSIM
(eq. 9), always; and the heatmap, the min-max normalised |X - X_hat| with
vialguard.heatmap's epsilon. Served numbers equal the trainer's and the numpy
reference's.

Only the encoder and decoder run here: the second encoder (z_hat) serves the training
loss only and would double the cost of inference. A generator with a segmentation head
attached (trainer.networks.segmenter) scores the head's logit map instead of the
1 - SSIM map, and a version whose local score is of the strip reference's map
(vialguard.strip_reference) scores that; phi stays the paper's.
"""
from __future__ import annotations

from typing import Callable

import keras
import numpy as np
import tensorflow as tf

from trainer.config import ModelProfile
from trainer.networks.generator import DECODER_NAME, ENCODER_NAME, build_generator
from trainer.networks.segmenter import segmenter_of
from trainer.local_score_tf import anomaly_map as ssim_anomaly_map
from trainer.local_score_tf import local_score_tf
from vialguard.heatmap import EPSILON
from vialguard.inspector_io import INPUT_PATCHES, OUTPUT_HEATMAP, OUTPUT_PHI, OUTPUT_SCORE
from trainer.strip_reference_tf import strip_maps_tf
from vialguard.local_score import MAP_SEGMENTER, MAP_SSIM, MAP_STRIP, LocalScoreModel, PatchLayout
from vialguard.strip_reference import StripReferenceParams

InspectorFn = Callable[[tf.Tensor], dict[str, tf.Tensor]]


def heatmap_tf(x: tf.Tensor, x_hat: tf.Tensor) -> tf.Tensor:
    """vialguard.heatmap.heatmap in TensorFlow: per-patch min-max normalised |X - X_hat|."""
    diff = tf.abs(tf.cast(x, tf.float32) - tf.cast(x_hat, tf.float32))
    lo = tf.reduce_min(diff, axis=[1, 2, 3], keepdims=True)
    hi = tf.reduce_max(diff, axis=[1, 2, 3], keepdims=True)
    return (diff - lo) / tf.maximum(hi - lo, EPSILON)


MapsTf = Callable[[tf.Tensor], tuple[tf.Tensor, tf.Tensor, tf.Tensor]]


def scored_map(generator: keras.Model, requested: str = MAP_SSIM) -> str:
    """The map :func:`inspection_maps` scores for ``requested``: the strip map when asked for,
    else the segmentation head's logits when the generator carries one, else 1 - SSIM."""
    if requested == MAP_STRIP:
        return MAP_STRIP
    return MAP_SSIM if segmenter_of(generator) is None else MAP_SEGMENTER


def inspection_maps(generator: keras.Model, anomaly_map: str = MAP_SSIM, layout: PatchLayout | None = None) -> MapsTf:
    """patches [N, P, P, 1] -> (anomaly maps [N, h, w], phi [N], X_hat): what every score is made of.

    The maps are the 1 - SSIM map, the segmentation head's logits when the generator
    carries one, or with ``anomaly_map`` MAP_STRIP the strip reference's map (each vial
    against the others of its strip); phi is always the mean of the 1 - SSIM map (eq. 9).
    With a ``layout``, N must be whole acquisitions of it, and the SSIM is computed with an
    acquisition's patches side by side (the same numbers, 5x faster under ONNX Runtime).
    """
    encoder = generator.get_layer(ENCODER_NAME)
    decoder = generator.get_layer(DECODER_NAME)
    segmenter = segmenter_of(generator)
    if anomaly_map == MAP_STRIP and (segmenter is not None or layout is None):
        raise ValueError("the strip reference map needs the patch layout and a generator without a segmentation head")

    def maps(patches: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor, tf.Tensor]:
        x = tf.cast(patches, encoder.compute_dtype)
        x_hat = tf.cast(decoder(encoder(x, training=False), training=False), tf.float32)
        ssim_maps = ssim_anomaly_map(patches, x_hat, layout.per_acquisition if layout is not None else None)
        phi = tf.reduce_mean(ssim_maps, axis=[1, 2])  # = 1 - SSIM (eq. 9): the mean of the same map
        if anomaly_map == MAP_STRIP:
            assert layout is not None
            return strip_maps_tf(patches, layout, StripReferenceParams()), phi, x_hat
        if segmenter is None:
            return ssim_maps, phi, x_hat
        logits = tf.cast(segmenter([patches, x_hat], training=False), tf.float32)[..., 0]
        return logits, phi, x_hat

    return maps


def build_inspector(generator: keras.Model, local: LocalScoreModel | None = None) -> InspectorFn:
    """A tf.function [N, P, P, 1] float32 -> {"score": [N], "phi": [N], "heatmap": [N, P, P, 1]}.

    With ``local``, ``score`` is the local score and N must be whole acquisitions in
    patch order; without it, ``score`` is phi and any N goes. Ready for
    tf2onnx.convert.from_function with
    input_signature=[tf.TensorSpec([None, P, P, 1], tf.float32, name="patches")].
    """
    size = generator.get_layer(ENCODER_NAME).input.shape[1]
    spec = tf.TensorSpec([None, size, size, 1], tf.float32, name=INPUT_PATCHES)
    maps_of = inspection_maps(generator, local.anomaly_map if local is not None else MAP_SSIM,
                              local.layout if local is not None else None)

    @tf.function(input_signature=[spec])
    def inspector(patches: tf.Tensor) -> dict[str, tf.Tensor]:
        maps, phi, x_hat = maps_of(patches)
        score = phi if local is None else local_score_tf(maps, local)
        return {OUTPUT_SCORE: tf.identity(score, name=OUTPUT_SCORE), OUTPUT_PHI: tf.identity(phi, name=OUTPUT_PHI),
                OUTPUT_HEATMAP: tf.identity(heatmap_tf(patches, x_hat), name=OUTPUT_HEATMAP)}

    return inspector


def float32_generator(generator: keras.Model, profile: ModelProfile) -> keras.Model:
    """The same generator rebuilt in float32, weights copied.

    A generator trained under mixed_float16 computes in float16; ONNX Runtime on a CPU
    and the 1e-4 score contract want float32. Variables are float32 under either
    policy, so the weights copy over unchanged.
    """
    previous = keras.config.dtype_policy()
    keras.mixed_precision.set_global_policy("float32")
    try:
        copy = build_generator(profile)
    finally:
        keras.mixed_precision.set_global_policy(previous)
    copy.set_weights(generator.get_weights())
    return copy


def score_patches(
    inspector: InspectorFn, patches: np.ndarray, batch: int = 60
) -> tuple[np.ndarray, np.ndarray]:
    """Run the inspector over any number of patches in batches: (scores [N], heatmaps)."""
    patches = np.asarray(patches, dtype=np.float32)
    if patches.ndim == 3:
        patches = patches[..., None]
    if patches.ndim != 4 or patches.shape[-1] != 1:
        raise ValueError(f"patches must be [N, P, P, 1] grayscale, got shape {patches.shape}")
    if batch < 1:
        raise ValueError(f"batch must be >= 1, got {batch}")
    scores, heatmaps = [], []
    for start in range(0, len(patches), batch):
        out = inspector(tf.constant(patches[start : start + batch]))
        scores.append(out[OUTPUT_SCORE].numpy())
        heatmaps.append(out[OUTPUT_HEATMAP].numpy())
    if not scores:
        return np.zeros((0,), np.float32), np.zeros((0, *patches.shape[1:]), np.float32)
    return np.concatenate(scores), np.concatenate(heatmaps)
