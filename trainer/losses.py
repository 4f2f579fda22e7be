"""The losses of paper section 6 (eq. 2-8), each a small function on batches.

Weights are applied in generator_loss only, from TrainConfig, so every term can be
logged and tested on its own.
"""
from __future__ import annotations

from typing import NamedTuple

import keras
import tensorflow as tf

from trainer.config import TrainConfig
from trainer.ssim_tf import ssim


def _f32(t: tf.Tensor) -> tf.Tensor:
    return tf.cast(t, tf.float32)


def adversarial_loss(features_real: tf.Tensor, features_fake: tf.Tensor) -> tf.Tensor:
    """Eq. 2: L2 (mean squared error) between the discriminator's last conv features of X and X_hat."""
    return tf.reduce_mean(tf.square(_f32(features_real) - _f32(features_fake)))


def huber_loss(x: tf.Tensor, x_hat: tf.Tensor, delta: float = 1.0) -> tf.Tensor:
    """Mean Huber loss: quadratic below `delta`, linear above (eq. 7's L1 replacement)."""
    err = tf.abs(_f32(x) - _f32(x_hat))
    quadratic = tf.minimum(err, delta)
    return tf.reduce_mean(0.5 * quadratic * quadratic + delta * (err - quadratic))


def ssim_loss(x: tf.Tensor, x_hat: tf.Tensor) -> tf.Tensor:
    """L_SSIM = 1 - SSIM(X, X_hat), averaged over the batch, with the one TF SSIM."""
    return 1.0 - tf.reduce_mean(ssim(x, x_hat))


def contextual_loss(x: tf.Tensor, x_hat: tf.Tensor, w_a: float, w_b: float, delta: float = 1.0) -> tf.Tensor:
    """Eq. 7: w_a * Huber(X, X_hat) + w_b * (1 - SSIM(X, X_hat))."""
    return w_a * huber_loss(x, x_hat, delta) + w_b * ssim_loss(x, x_hat)


def encoder_loss(z: tf.Tensor, z_hat: tf.Tensor) -> tf.Tensor:
    """Eq. 4: mean absolute difference between the latents of X and of X_hat."""
    return tf.reduce_mean(tf.abs(_f32(z) - _f32(z_hat)))


def noise_loss(x_perturbed: tf.Tensor, x_hat: tf.Tensor, noise: tf.Tensor) -> tf.Tensor:
    """Eq. 6 without its weight: L1(|X_n - X_hat|, N). Zero when X_hat removes exactly the noise."""
    residual = tf.abs(_f32(x_perturbed) - _f32(x_hat))
    return tf.reduce_mean(tf.abs(residual - _f32(noise)))


def discriminator_loss(logits_real: tf.Tensor, logits_fake: tf.Tensor) -> tf.Tensor:
    """Binary cross-entropy: X labelled real (1), X_hat labelled fake (0); mean of both halves."""
    bce = keras.losses.binary_crossentropy
    real = bce(tf.ones_like(logits_real, tf.float32), _f32(logits_real), from_logits=True)
    fake = bce(tf.zeros_like(logits_fake, tf.float32), _f32(logits_fake), from_logits=True)
    return 0.5 * (tf.reduce_mean(real) + tf.reduce_mean(fake))


class GeneratorLosses(NamedTuple):
    total: tf.Tensor
    adversarial: tf.Tensor
    contextual: tf.Tensor
    encoder: tf.Tensor
    noise: tf.Tensor


def generator_loss(
    config: TrainConfig,
    x: tf.Tensor,
    x_perturbed: tf.Tensor,
    noise: tf.Tensor,
    x_hat: tf.Tensor,
    z: tf.Tensor,
    z_hat: tf.Tensor,
    features_real: tf.Tensor,
    features_fake: tf.Tensor,
) -> GeneratorLosses:
    """Eq. 5 plus the noise loss: w1*adv + w2*con + w3*enc + w4*nse (paper weights by default)."""
    adv = adversarial_loss(features_real, features_fake)
    con = contextual_loss(x, x_hat, config.w_a, config.w_b, config.huber_delta)
    enc = encoder_loss(z, z_hat)
    nse = noise_loss(x_perturbed, x_hat, noise)
    total = config.w1 * adv + config.w2 * con + config.w3 * enc + config.w4 * nse
    return GeneratorLosses(total, adv, con, enc, nse)
