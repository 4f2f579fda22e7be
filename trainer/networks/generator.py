"""The generator of paper 6.1.3 / 7.2: encoder -> dense bottleneck -> decoder -> encoder.

Built as three named sub-models so that serving can take only what it needs:
`encoder` (G_E: X -> z), `decoder` (G_D: z -> X_hat) and `encoder_hat`
(G_E^: X_hat -> z_hat, same architecture, its own weights). The inspector graph uses
encoder and decoder only; encoder_hat exists for the encoder loss L1(z, z_hat).
"""
from __future__ import annotations

import keras
from keras import layers

from trainer.config import ModelProfile
from trainer.networks.blocks import residual_stage

ENCODER_NAME = "encoder"
DECODER_NAME = "decoder"
ENCODER_HAT_NAME = "encoder_hat"


def space_to_depth(x: keras.KerasTensor, block: int, name: str) -> keras.KerasTensor:
    """[H, W, C] -> [H/b, W/b, C*b*b] with built-in layers only (Reshape/Permute: ONNX Reshape/Transpose)."""
    h, w, c = x.shape[1], x.shape[2], x.shape[3]
    x = layers.Reshape((h // block, block, w // block, block * c), name=f"{name}_split")(x)
    x = layers.Permute((1, 3, 2, 4), name=f"{name}_permute")(x)
    return layers.Reshape((h // block, w // block, block * block * c), name=f"{name}_merge")(x)


def depth_to_space(x: keras.KerasTensor, block: int, name: str) -> keras.KerasTensor:
    """The inverse of :func:`space_to_depth`: [H, W, C*b*b] -> [H*b, W*b, C]."""
    h, w, c = x.shape[1], x.shape[2], x.shape[3] // (block * block)
    x = layers.Reshape((h, w, block, block * c), name=f"{name}_split")(x)
    x = layers.Permute((1, 3, 2, 4), name=f"{name}_permute")(x)
    return layers.Reshape((h * block, w * block, c), name=f"{name}_merge")(x)


def build_encoder_features(profile: ModelProfile, name: str = ENCODER_NAME) -> keras.Model:
    """The convolutional part of the encoder: [P, P, 1] -> [P/2^S, P/2^S, last width]."""
    inputs = keras.Input((profile.patch_size, profile.patch_size, 1), name=f"{name}_input")
    x = inputs
    if profile.space_to_depth > 1:
        x = space_to_depth(x, profile.space_to_depth, f"{name}_s2d")
    x = layers.Conv2D(profile.stem_width, 3, padding="same", use_bias=False, name=f"{name}_stem")(x)
    for i, width in enumerate(profile.stage_widths):
        x = residual_stage(x, width, profile.bottleneck_ratio, f"{name}_s{i + 1}")
    # Pre-activation blocks leave their sum un-normalised: close with BN + ReLU.
    x = layers.BatchNormalization(name=f"{name}_post_bn")(x)
    x = layers.ReLU(name=f"{name}_post_relu")(x)
    return keras.Model(inputs, x, name=f"{name}_features")


def build_encoder(profile: ModelProfile, name: str = ENCODER_NAME) -> keras.Model:
    """G_E: patch -> z (latent_dim), through the residual stages and a dense bottleneck."""
    features = build_encoder_features(profile, name)
    x = layers.Flatten(name=f"{name}_flatten")(features.output)
    z = layers.Dense(profile.latent_dim, name=f"{name}_latent")(x)
    return keras.Model(features.input, z, name=name)


def build_decoder(profile: ModelProfile, name: str = DECODER_NAME) -> keras.Model:
    """G_D: z -> X_hat in [0, 1], the encoder mirrored with transposed convolutions."""
    size = profile.encoder_output_size
    last = profile.stage_widths[-1]
    z = keras.Input((profile.latent_dim,), name=f"{name}_input")
    x = layers.Dense(size * size * last, name=f"{name}_expand")(z)
    x = layers.Reshape((size, size, last), name=f"{name}_reshape")(x)
    for i, width in enumerate(reversed(profile.stage_widths)):
        x = residual_stage(x, width, profile.bottleneck_ratio, f"{name}_s{i + 1}", transposed=True)
    x = layers.BatchNormalization(name=f"{name}_post_bn")(x)
    x = layers.ReLU(name=f"{name}_post_relu")(x)
    block = profile.space_to_depth
    x = layers.Conv2D(block * block, 3, padding="same", name=f"{name}_out_conv")(x)  # stride 1: see blocks._conv
    if block > 1:
        x = depth_to_space(x, block, f"{name}_d2s")
    # float32 output even under mixed precision: SSIM and the heatmap need it.
    x_hat = layers.Activation("sigmoid", dtype="float32", name=f"{name}_sigmoid")(x)
    return keras.Model(z, x_hat, name=name)


def build_generator(profile: ModelProfile) -> keras.Model:
    """G: X -> (X_hat, z, z_hat), each a named output of one functional model."""
    encoder = build_encoder(profile, ENCODER_NAME)
    decoder = build_decoder(profile, DECODER_NAME)
    encoder_hat = build_encoder(profile, ENCODER_HAT_NAME)
    x = keras.Input((profile.patch_size, profile.patch_size, 1), name="patches")
    z = encoder(x)
    x_hat = decoder(z)
    z_hat = encoder_hat(x_hat)
    return keras.Model(x, {"x_hat": x_hat, "z": z, "z_hat": z_hat}, name=f"generator_{profile.name}")
