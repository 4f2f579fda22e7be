"""Each loss of paper eq. 2-8 equals its hand-computed value on tiny tensors."""
from __future__ import annotations

import math
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np
import pytest
import tensorflow as tf

from trainer.config import TrainConfig
from trainer.losses import (
    adversarial_loss,
    contextual_loss,
    discriminator_loss,
    encoder_loss,
    generator_loss,
    huber_loss,
    noise_loss,
    ssim_loss,
)
from vialguard.ssim import ssim as reference_ssim


def test_adversarial_loss_is_mean_squared_feature_difference() -> None:
    real = tf.constant([[1.0, 2.0], [3.0, 4.0]])
    fake = tf.constant([[1.0, 0.0], [0.0, 4.0]])
    assert float(adversarial_loss(real, fake)) == pytest.approx((0 + 4 + 9 + 0) / 4)


def test_huber_loss_is_quadratic_below_delta_and_linear_above() -> None:
    x = tf.constant([0.0, 0.0, 0.0])
    y = tf.constant([0.5, 2.0, -3.0])
    expected = (0.5 * 0.25 + (2.0 - 0.5) + (3.0 - 0.5)) / 3
    assert float(huber_loss(x, y, delta=1.0)) == pytest.approx(expected)


def test_contextual_loss_weights_huber_and_ssim_terms() -> None:
    rng = np.random.default_rng(0)
    x = rng.random((2, 16, 16, 1)).astype(np.float32)
    y = np.clip(x + 0.1, 0, 1).astype(np.float32)
    diff = np.abs(x - y)
    huber = float(np.mean(np.where(diff <= 1, 0.5 * diff**2, diff - 0.5)))
    l_ssim = 1.0 - float(np.mean(reference_ssim(x, y)))
    assert float(ssim_loss(x, y)) == pytest.approx(l_ssim, abs=1e-5)
    assert float(contextual_loss(x, y, 2.0, 1.0)) == pytest.approx(2.0 * huber + 1.0 * l_ssim, abs=1e-5)


def test_encoder_loss_is_mean_absolute_latent_difference() -> None:
    z = tf.constant([[1.0, -1.0, 0.5]])
    z_hat = tf.constant([[0.0, 1.0, 0.5]])
    assert float(encoder_loss(z, z_hat)) == pytest.approx(3.0 / 3)


def test_noise_loss_is_zero_for_a_perfect_reconstruction_and_l1_otherwise() -> None:
    x = tf.constant([[0.2, 0.4], [0.6, 0.8]])[None, ..., None]
    noise = tf.constant([[0.0, 0.3], [0.0, 0.1]])[None, ..., None]
    x_n = x + noise
    assert float(noise_loss(x_n, x, noise)) == pytest.approx(0.0, abs=1e-7)
    # Reconstructing the noisy input itself leaves residual 0 where N is 0.3 and 0.1.
    assert float(noise_loss(x_n, x_n, noise)) == pytest.approx((0.3 + 0.1) / 4)


def test_discriminator_loss_is_binary_cross_entropy_real_vs_reconstructed() -> None:
    real, fake = tf.constant([[2.0]]), tf.constant([[-1.0]])
    sig = lambda v: 1 / (1 + math.exp(-v))  # noqa: E731
    expected = 0.5 * (-math.log(sig(2.0)) - math.log(1 - sig(-1.0)))
    assert float(discriminator_loss(real, fake)) == pytest.approx(expected, rel=1e-5)


def test_generator_loss_uses_the_paper_weights() -> None:
    rng = np.random.default_rng(1)
    x = rng.random((2, 16, 16, 1)).astype(np.float32)
    x_hat = np.clip(x + rng.normal(0, 0.1, x.shape), 0, 1).astype(np.float32)
    noise = (rng.random(x.shape) * 0.2).astype(np.float32)
    x_n = np.clip(x + noise, 0, 1).astype(np.float32)
    z, z_hat = rng.normal(size=(2, 64)).astype(np.float32), rng.normal(size=(2, 64)).astype(np.float32)
    f_real, f_fake = rng.normal(size=(2, 4, 4, 8)).astype(np.float32), rng.normal(size=(2, 4, 4, 8)).astype(np.float32)
    out = generator_loss(TrainConfig(), x, x_n, noise, x_hat, z, z_hat, f_real, f_fake)
    expected = (
        1.0 * float(adversarial_loss(f_real, f_fake))
        + 50.0 * float(contextual_loss(x, x_hat, 2.0, 1.0))
        + 1.0 * float(encoder_loss(z, z_hat))
        + 3.0 * float(noise_loss(x_n, x_hat, noise))
    )
    assert float(out.total) == pytest.approx(expected, rel=1e-5)
    assert float(out.contextual) == pytest.approx(float(contextual_loss(x, x_hat, 2.0, 1.0)), rel=1e-6)
    halved = generator_loss(TrainConfig(w2=25.0), x, x_n, noise, x_hat, z, z_hat, f_real, f_fake)
    assert float(out.total - halved.total) == pytest.approx(25.0 * float(out.contextual), rel=1e-4)
