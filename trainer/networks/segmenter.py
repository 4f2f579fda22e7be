"""The segmentation head of GRD-Net / DRAEM: (X, X_hat) -> where X is not a good product.

The reconstruction residual alone cannot tell a 2 px particle from the meniscus,
which the narrow auto-encoder also blurs: both leave a residual of the same size. A
small discriminative network that sees the patch, its reconstruction and their
difference side by side learns which residuals are defects (trained on synthetic
defects, trainer.synthetic_defects) and which are the product's own structure.

Shaped for the CPU budget like the generator: the same space-to-depth stem (every
pixel kept, the convolutions run at 1/4 resolution), one stride-2 level with dilated
convolutions for context (about 50 px), a skip connection back to the stem's
resolution, and a depth-to-space head that predicts each pixel of a 4x4 block. The
output is a logit map at full resolution ([P, P, 1]); the local score
(vialguard.local_score) smooths and normalises it like the 1 - SSIM map.
"""
from __future__ import annotations

import keras
from keras import layers

from trainer.config import ModelProfile
from trainer.networks.generator import depth_to_space, space_to_depth

SEGMENTER_NAME = "segmenter"
WIDTH = 16          # channels at the stem's resolution
CONTEXT_WIDTH = 24  # channels at half of it


def _conv(x: keras.KerasTensor, width: int, kernel: int, name: str, strides: int = 1,
          dilation: int = 1) -> keras.KerasTensor:
    x = layers.Conv2D(width, kernel, strides=strides, dilation_rate=dilation, padding="same",
                      use_bias=False, name=f"{name}_conv")(x)
    x = layers.BatchNormalization(name=f"{name}_bn")(x)
    return layers.ReLU(name=f"{name}_relu")(x)


def build_segmenter(profile: ModelProfile) -> keras.Model:
    """S: (X, X_hat) [P, P, 1] each -> logits [P, P, 1] (float32 even under mixed precision)."""
    size, block = profile.patch_size, profile.space_to_depth
    x = keras.Input((size, size, 1), name=f"{SEGMENTER_NAME}_x")
    x_hat = keras.Input((size, size, 1), name=f"{SEGMENTER_NAME}_x_hat")
    diff = layers.Subtract(name=f"{SEGMENTER_NAME}_residual")([x, x_hat])
    h = layers.Concatenate(name=f"{SEGMENTER_NAME}_inputs")([x, x_hat, diff])
    if block > 1:
        h = space_to_depth(h, block, f"{SEGMENTER_NAME}_s2d")
    skip = _conv(h, WIDTH, 1, f"{SEGMENTER_NAME}_stem")
    skip = _conv(skip, WIDTH, 3, f"{SEGMENTER_NAME}_local")
    c = _conv(skip, CONTEXT_WIDTH, 3, f"{SEGMENTER_NAME}_down", strides=2)
    c = _conv(c, CONTEXT_WIDTH, 3, f"{SEGMENTER_NAME}_ctx2", dilation=2)
    c = _conv(c, CONTEXT_WIDTH, 3, f"{SEGMENTER_NAME}_ctx4", dilation=4)
    c = layers.UpSampling2D(2, interpolation="nearest", name=f"{SEGMENTER_NAME}_up")(c)
    h = layers.Concatenate(name=f"{SEGMENTER_NAME}_skip")([skip, c])
    h = _conv(h, WIDTH, 1, f"{SEGMENTER_NAME}_fuse")
    h = layers.Conv2D(block * block, 1, padding="same", name=f"{SEGMENTER_NAME}_logits_conv")(h)
    if block > 1:
        h = depth_to_space(h, block, f"{SEGMENTER_NAME}_d2s")
    logits = layers.Activation("linear", dtype="float32", name=f"{SEGMENTER_NAME}_logits")(h)
    return keras.Model([x, x_hat], logits, name=SEGMENTER_NAME)


def attach_segmenter(generator: keras.Model, segmenter: keras.Model) -> keras.Model:
    """The generator with the head beside it: outputs x_hat, z, z_hat and ``seg_logits``.

    One saved model then carries everything the inspector graph needs, so calibrate,
    evaluate and export take the same ``--generator`` file with or without a head.
    """
    from trainer.networks.generator import DECODER_NAME, ENCODER_HAT_NAME, ENCODER_NAME

    encoder, decoder = generator.get_layer(ENCODER_NAME), generator.get_layer(DECODER_NAME)
    encoder_hat = generator.get_layer(ENCODER_HAT_NAME)
    x = keras.Input(encoder.input.shape[1:], name="patches")
    z = encoder(x)
    x_hat = decoder(z)
    outputs = {"x_hat": x_hat, "z": z, "z_hat": encoder_hat(x_hat), "seg_logits": segmenter([x, x_hat])}
    return keras.Model(x, outputs, name=f"{generator.name}_with_{SEGMENTER_NAME}")


def segmenter_of(generator: keras.Model) -> keras.Model | None:
    """The head attached to a generator, or None for a plain generator."""
    try:
        return generator.get_layer(SEGMENTER_NAME)
    except ValueError:
        return None
