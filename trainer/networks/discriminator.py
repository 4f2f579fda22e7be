"""The discriminator C of paper 6.1.3: a convolutional encoder with a dense real/fake head.

It returns both the logit and the last convolutional feature map F_C, because the
generator's adversarial loss is L2(F_C(X), F_C(X_hat)) (feature matching, eq. 2),
not the logit.
"""
from __future__ import annotations

import keras
from keras import layers

from trainer.config import ModelProfile


def build_discriminator(profile: ModelProfile) -> keras.Model:
    """C: patch -> {"logits": [B, 1] (real > 0), "features": last conv map}."""
    inputs = keras.Input((profile.patch_size, profile.patch_size, 1), name="patches")
    x = inputs
    # No biases: BatchNorm follows every conv but the first, and TF 2.21's grappler
    # fails (with a logged error) to fuse Conv+BiasAdd+LeakyReLU in the gradient graph.
    for i, width in enumerate(profile.disc_widths):
        x = layers.Conv2D(width, 4, strides=2, padding="same", use_bias=False, name=f"disc_conv{i + 1}")(x)
        if i > 0:
            x = layers.BatchNormalization(name=f"disc_bn{i + 1}")(x)
        x = layers.LeakyReLU(0.2, name=f"disc_lrelu{i + 1}")(x)
    features = layers.Activation("linear", dtype="float32", name="disc_features")(x)
    h = layers.GlobalAveragePooling2D(name="disc_pool")(x)
    logits = layers.Dense(1, dtype="float32", name="disc_logits")(h)
    return keras.Model(inputs, {"logits": logits, "features": features}, name=f"discriminator_{profile.name}")
