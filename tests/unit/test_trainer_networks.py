"""Shapes and wiring of the paper's residual generator and discriminator (section 7.2)."""
from __future__ import annotations

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras
import numpy as np
import pytest

from trainer.config import PROFILES
from trainer.networks.blocks import residual_block
from trainer.networks.discriminator import build_discriminator
from trainer.networks.generator import build_encoder_features, build_generator

TINY = PROFILES["tiny"]


def _block_output_shape(kind: str, transposed: bool, in_width: int = 4, out_width: int = 6) -> tuple:
    width = out_width if kind == "B" else in_width
    x = keras.Input((16, 16, width))
    return tuple(residual_block(x, kind, out_width, 3, f"t{kind}{transposed}", transposed).shape)


@pytest.mark.parametrize("transposed", [False, True])
def test_blocks_a_and_b_keep_height_and_width(transposed: bool) -> None:
    assert _block_output_shape("A", transposed) == (None, 16, 16, 6)
    assert _block_output_shape("B", transposed) == (None, 16, 16, 6)


def test_encoder_block_c_halves_height_and_width() -> None:
    assert _block_output_shape("C", False) == (None, 8, 8, 6)


def test_decoder_block_c_doubles_height_and_width() -> None:
    assert _block_output_shape("C", True) == (None, 32, 32, 6)


def test_block_b_refuses_a_width_change() -> None:
    with pytest.raises(ValueError, match="keeps the width"):
        residual_block(keras.Input((8, 8, 4)), "B", 6, 3, "bad")


def test_paper_encoder_ends_at_16x16x1024() -> None:
    features = build_encoder_features(PROFILES["paper"])
    assert tuple(features.output.shape) == (None, 16, 16, 1024)


def test_cpu_profile_keeps_four_stages_of_the_paper_architecture() -> None:
    p = PROFILES["cpu"]
    features = build_encoder_features(p)
    assert len(p.stage_widths) == 4
    assert p.patch_size == 256  # the recipe's native region: nothing resampled away
    side = p.patch_size // (p.space_to_depth * 16)
    assert tuple(features.output.shape) == (None, side, side, p.stage_widths[-1]) == (None, 4, 4, 64)


def test_space_to_depth_stem_and_depth_to_space_head_are_exact_inverses() -> None:
    from trainer.networks.generator import depth_to_space, space_to_depth

    inputs = keras.Input((16, 16, 1))
    model = keras.Model(inputs, depth_to_space(space_to_depth(inputs, 4, "s2d"), 4, "d2s"))
    x = np.random.default_rng(2).random((2, 16, 16, 1)).astype(np.float32)
    np.testing.assert_array_equal(model(x).numpy(), x)
    import tensorflow as tf

    stem = keras.Model(inputs, space_to_depth(inputs, 4, "s2d_only"))
    np.testing.assert_array_equal(stem(x).numpy(), tf.nn.space_to_depth(x, 4).numpy())


def test_generator_outputs_reconstruction_in_unit_range_and_64_latents() -> None:
    g = build_generator(TINY)
    x = np.random.default_rng(0).random((3, TINY.patch_size, TINY.patch_size, 1)).astype(np.float32)
    out = g(x, training=False)
    assert tuple(out["x_hat"].shape) == x.shape
    assert float(np.min(out["x_hat"])) >= 0.0 and float(np.max(out["x_hat"])) <= 1.0
    assert tuple(out["z"].shape) == (3, 64) and tuple(out["z_hat"].shape) == (3, 64)


def test_z_hat_comes_from_a_second_encoder_applied_to_x_hat() -> None:
    g = build_generator(TINY)
    x = np.random.default_rng(1).random((2, TINY.patch_size, TINY.patch_size, 1)).astype(np.float32)
    out = g(x, training=False)
    encoder, encoder_hat = g.get_layer("encoder"), g.get_layer("encoder_hat")
    assert encoder is not encoder_hat
    np.testing.assert_allclose(encoder_hat(out["x_hat"], training=False), out["z_hat"], atol=1e-5)
    np.testing.assert_allclose(encoder(x, training=False), out["z"], atol=1e-5)
    # Separate weights: the second encoder does not merely re-run the first one.
    assert not np.allclose(encoder(out["x_hat"], training=False), out["z_hat"])


def test_discriminator_exposes_logits_and_last_conv_features() -> None:
    d = build_discriminator(TINY)
    x = np.zeros((2, TINY.patch_size, TINY.patch_size, 1), np.float32)
    out = d(x, training=False)
    side = TINY.patch_size // 2 ** len(TINY.disc_widths)
    assert tuple(out["logits"].shape) == (2, 1)
    assert tuple(out["features"].shape) == (2, side, side, TINY.disc_widths[-1])


def test_cpu_profile_generator_gradients_are_finite() -> None:
    """Regression: TF 2.21's oneDNN crashed computing the filter gradient of a 1x1
    stride-2 conv at 64x64 (the cpu profile), killing the training process."""
    import tensorflow as tf

    g = build_generator(PROFILES["cpu"])
    x = tf.random.uniform((2, PROFILES["cpu"].patch_size, PROFILES["cpu"].patch_size, 1), seed=1)
    with tf.GradientTape() as tape:
        out = g(x, training=True)
        loss = tf.reduce_mean(tf.abs(out["x_hat"] - x)) + tf.reduce_mean(tf.abs(out["z"] - out["z_hat"]))
    grads = tape.gradient(loss, g.trainable_variables)
    assert all(gr is not None and bool(tf.reduce_all(tf.math.is_finite(gr))) for gr in grads)


def test_generator_survives_keras_save_and_load_with_its_named_parts(tmp_path) -> None:
    g = build_generator(TINY)
    path = tmp_path / "generator.keras"
    g.save(path)
    loaded = keras.models.load_model(path, compile=False)
    x = np.random.default_rng(2).random((2, TINY.patch_size, TINY.patch_size, 1)).astype(np.float32)
    for name in ("encoder", "decoder", "encoder_hat"):
        assert loaded.get_layer(name) is not None
    np.testing.assert_allclose(loaded(x, training=False)["x_hat"], g(x, training=False)["x_hat"], atol=1e-6)
