"""The inspector graph scores like the numpy reference and survives ONNX export unchanged."""
from __future__ import annotations

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np
import pytest
import tensorflow as tf

from trainer.config import PROFILES
from trainer.inspector import build_inspector, float32_generator, score_patches
from trainer.networks.generator import build_generator
from vialguard.heatmap import heatmap as reference_heatmap
from vialguard.inspector_io import INPUT_PATCHES, OUTPUT_HEATMAP, OUTPUT_PHI, OUTPUT_SCORE, OUTPUTS
from vialguard.ssim import anomaly_score as reference_score

TINY = PROFILES["tiny"]


@pytest.fixture(scope="module")
def generator():
    return build_generator(TINY)


@pytest.fixture(scope="module")
def patches() -> np.ndarray:
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0 : TINY.patch_size, 0 : TINY.patch_size] / TINY.patch_size
    smooth = 0.5 + 0.3 * np.sin(6 * xx)[None] * np.cos(4 * yy)[None] * rng.random((7, 1, 1))
    return np.clip(smooth + rng.normal(0, 0.05, smooth.shape), 0, 1)[..., None].astype(np.float32)


def test_inspector_score_and_heatmap_equal_the_numpy_reference(generator, patches) -> None:
    inspector = build_inspector(generator)
    out = inspector(tf.constant(patches))
    enc, dec = generator.get_layer("encoder"), generator.get_layer("decoder")
    x_hat = dec(enc(patches, training=False), training=False).numpy()
    np.testing.assert_allclose(out[OUTPUT_SCORE].numpy(), reference_score(patches, x_hat), atol=1e-5)
    np.testing.assert_allclose(out[OUTPUT_HEATMAP].numpy(), reference_heatmap(patches, x_hat), atol=1e-5)
    assert out[OUTPUT_HEATMAP].shape == patches.shape


def test_score_patches_gives_the_same_result_whatever_the_batch(generator, patches) -> None:
    inspector = build_inspector(generator)
    scores_one, heat_one = score_patches(inspector, patches, batch=60)
    scores_many, heat_many = score_patches(inspector, patches, batch=3)
    assert scores_one.shape == (7,)
    np.testing.assert_allclose(scores_many, scores_one, atol=1e-6)
    np.testing.assert_allclose(heat_many, heat_one, atol=1e-6)


def test_score_patches_refuses_colour_patches(generator) -> None:
    with pytest.raises(ValueError, match="grayscale"):
        score_patches(build_inspector(generator), np.zeros((2, 32, 32, 3), np.float32))


def test_tf2onnx_export_scores_equal_keras_scores(generator, patches) -> None:
    import onnxruntime as ort
    import tf2onnx

    inspector = build_inspector(generator)
    spec = [tf.TensorSpec([None, TINY.patch_size, TINY.patch_size, 1], tf.float32, name=INPUT_PATCHES)]
    proto, _ = tf2onnx.convert.from_function(inspector, input_signature=spec, opset=17)
    session = ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"])
    assert [i.name for i in session.get_inputs()] == [INPUT_PATCHES]
    names = [o.name for o in session.get_outputs()]
    assert sorted(names) == sorted(OUTPUTS)
    onnx_out = dict(zip(names, session.run(None, {INPUT_PATCHES: patches})))
    keras_scores, keras_heat = score_patches(inspector, patches)
    np.testing.assert_allclose(onnx_out[OUTPUT_SCORE], keras_scores, atol=1e-4)
    np.testing.assert_allclose(onnx_out[OUTPUT_PHI], keras_scores, atol=1e-4)  # no local score: score = phi
    np.testing.assert_allclose(onnx_out[OUTPUT_HEATMAP], keras_heat, atol=1e-4)


def test_float32_copy_of_a_mixed_precision_generator_keeps_its_weights() -> None:
    import keras

    keras.mixed_precision.set_global_policy("mixed_float16")
    try:
        mixed = build_generator(TINY)
    finally:
        keras.mixed_precision.set_global_policy("float32")
    copy = float32_generator(mixed, TINY)
    assert copy.get_layer("encoder").compute_dtype == "float32"
    assert mixed.get_layer("encoder").compute_dtype == "float16"
    for a, b in zip(mixed.get_weights(), copy.get_weights()):
        np.testing.assert_array_equal(a, b)


def _tiny_local_model(fuse: bool) -> "LocalScoreModel":
    from vialguard.local_score import LocalScoreModel, PatchLayout

    rng = np.random.default_rng(3)
    side = TINY.patch_size - 10  # the 'valid' SSIM map
    layout = PatchLayout(frames=3, vials=1, regions=4)
    return LocalScoreModel(layout, fuse, rng.uniform(0, 0.05, (4, side, side)).astype(np.float32),
                           rng.uniform(0.01, 0.05, (4, side, side)).astype(np.float32))


@pytest.mark.parametrize("fuse", [True, False])
def test_inspector_local_score_and_phi_equal_the_numpy_reference_and_survive_onnx(generator, fuse: bool) -> None:
    import onnxruntime as ort
    import tf2onnx

    from vialguard.local_score import local_scores
    from vialguard.ssim import ssim_map

    local = _tiny_local_model(fuse)
    rng = np.random.default_rng(4)
    patches = rng.uniform(0.3, 0.7, (2 * local.layout.per_acquisition, TINY.patch_size, TINY.patch_size, 1))
    patches = patches.astype(np.float32)
    inspector = build_inspector(generator, local)
    out = inspector(tf.constant(patches))
    enc, dec = generator.get_layer("encoder"), generator.get_layer("decoder")
    x_hat = dec(enc(patches, training=False), training=False).numpy()
    maps = 1.0 - ssim_map(patches, x_hat)
    np.testing.assert_allclose(out[OUTPUT_SCORE].numpy(), local_scores(maps, local), rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(out[OUTPUT_PHI].numpy(), reference_score(patches, x_hat), atol=1e-5)
    spec = [tf.TensorSpec([None, TINY.patch_size, TINY.patch_size, 1], tf.float32, name=INPUT_PATCHES)]
    proto, _ = tf2onnx.convert.from_function(inspector, input_signature=spec, opset=17)
    session = ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"])
    served = dict(zip([o.name for o in session.get_outputs()], session.run(None, {INPUT_PATCHES: patches})))
    # 1e-4 in units of the SSIM map (the score is the map / scale): see trainer.export.compare_with_onnx
    assert np.max(np.abs(served[OUTPUT_SCORE] - out[OUTPUT_SCORE].numpy())) * local.score_unit <= 1e-4
    np.testing.assert_allclose(served[OUTPUT_PHI], out[OUTPUT_PHI].numpy(), atol=1e-4)
