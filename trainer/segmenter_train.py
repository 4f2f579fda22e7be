"""Training of the segmentation head on a trained, frozen generator (GRD-Net's second stage).

Each step takes clean good patches, applies the generator's own augmentation, draws
synthetic defects (trainer.synthetic_defects), reconstructs the changed patches with
the frozen encoder and decoder (exactly what the served graph will feed the head)
and fits the head to the defects' masks with the focal loss (gamma 2, as DRAEM)
plus a soft Dice loss over the batch: almost every pixel is good, and the focal term
alone keeps the head timid for thousands of steps (measured: 1,500 steps left its
soft Dice at 0.009 on synthetic defects); the Dice term rewards overlap directly. The generator never changes here, so the served phi and
heatmap are those of the trained GAN.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import keras
import tensorflow as tf

from trainer.augment import random_augment
from trainer.gan import patches_from
from trainer.monitoring import RunProgress
from trainer.networks.generator import DECODER_NAME, ENCODER_NAME
from trainer.networks.segmenter import build_segmenter
from trainer.config import ModelProfile
from trainer.synthetic_defects import synthetic_defects

log = logging.getLogger(__name__)
SEGMENTER_FILENAME = "segmenter.keras"


@dataclass(frozen=True)
class SegmenterConfig:
    """How long and how fast the head trains; rotation as the generator's training."""

    epochs: int = 12
    steps_per_epoch: int = 250
    batch_size: int = 16
    learning_rate: float = 2e-3
    focal_gamma: float = 2.0
    dice_weight: float = 1.0
    defect_probability: float = 0.6
    max_rotation: float = 0.03
    seed: int = 0


def focal_loss(logits: tf.Tensor, mask: tf.Tensor, gamma: float) -> tf.Tensor:
    """Mean binary focal loss over pixels: -(1 - p_t)^gamma log p_t."""
    logits = tf.cast(logits, tf.float32)
    ce = tf.nn.sigmoid_cross_entropy_with_logits(labels=mask, logits=logits)
    p = tf.sigmoid(logits)
    p_t = p * mask + (1.0 - p) * (1.0 - mask)
    return tf.reduce_mean(tf.pow(1.0 - p_t, gamma) * ce)


class SegmenterTraining(keras.Model):
    """The frozen generator's encoder/decoder and the head being trained."""

    def __init__(self, generator: keras.Model, segmenter: keras.Model, config: SegmenterConfig, **kwargs: Any):
        super().__init__(**kwargs)
        self.encoder = generator.get_layer(ENCODER_NAME)
        self.decoder = generator.get_layer(DECODER_NAME)
        self.encoder.trainable = False
        self.decoder.trainable = False
        self.segmenter = segmenter
        self.config = config
        self.rng = tf.random.Generator.from_seed(config.seed)
        self.trackers = {n: keras.metrics.Mean(name=n) for n in ("seg_loss", "dice")}

    @property
    def metrics(self) -> list[keras.metrics.Metric]:
        return list(self.trackers.values())

    def _batch(self, x: tf.Tensor, augment: bool) -> tuple[tf.Tensor, tf.Tensor, tf.Tensor]:
        if augment:
            x = random_augment(x, self.rng, self.config.max_rotation).images
        syn = synthetic_defects(x, self.rng, self.config.defect_probability)
        x_hat = tf.stop_gradient(tf.cast(self.decoder(self.encoder(syn.images, training=False), training=False),
                                         tf.float32))
        return syn.images, x_hat, syn.mask

    def _head_loss(self, images: tf.Tensor, x_hat: tf.Tensor, mask: tf.Tensor, training: bool
                ) -> tuple[tf.Tensor, dict[str, tf.Tensor]]:
        logits = self.segmenter([images, x_hat], training=training)
        p = tf.sigmoid(tf.cast(logits, tf.float32))
        dice = 2.0 * tf.reduce_sum(p * mask) / (tf.reduce_sum(p) + tf.reduce_sum(mask) + 1.0)
        loss = focal_loss(logits, mask, self.config.focal_gamma) + self.config.dice_weight * (1.0 - dice)
        return loss, {"seg_loss": loss, "dice": dice}

    def train_step(self, data: Any) -> dict[str, tf.Tensor]:
        images, x_hat, mask = self._batch(patches_from(data), augment=True)
        variables = self.segmenter.trainable_variables
        with tf.GradientTape() as tape:
            loss, values = self._head_loss(images, x_hat, mask, training=True)
        self.optimizer.apply_gradients(zip(tape.gradient(loss, variables), variables))
        return self._update(values)

    def test_step(self, data: Any) -> dict[str, tf.Tensor]:
        images, x_hat, mask = self._batch(patches_from(data), augment=False)
        return self._update(self._head_loss(images, x_hat, mask, training=False)[1])

    def _update(self, values: dict[str, tf.Tensor]) -> dict[str, tf.Tensor]:
        for name, value in values.items():
            self.trackers[name].update_state(value)
        return {name: t.result() for name, t in self.trackers.items()}


def train_segmenter(generator: keras.Model, profile: ModelProfile, train_ds: tf.data.Dataset,
                    val_ds: tf.data.Dataset | None, config: SegmenterConfig, workdir: Path) -> keras.Model:
    """Train the head on ``train_ds`` (clean good patches, endless) and save it to workdir."""
    keras.utils.set_random_seed(config.seed)
    segmenter = build_segmenter(profile)
    model = SegmenterTraining(generator, segmenter, config, name="segmenter_training")
    total = config.epochs * config.steps_per_epoch
    schedule = keras.optimizers.schedules.CosineDecay(config.learning_rate, total, alpha=0.02)
    model.compile(optimizer=keras.optimizers.Adam(schedule), jit_compile=False)
    workdir = Path(workdir)
    callbacks: list[keras.callbacks.Callback] = [
        RunProgress(config.epochs), keras.callbacks.TensorBoard(str(workdir / "tensorboard-segmenter"))]
    model.fit(train_ds, epochs=config.epochs, steps_per_epoch=config.steps_per_epoch, validation_data=val_ds,
              validation_steps=10 if val_ds is not None else None, callbacks=callbacks, verbose=2)
    workdir.mkdir(parents=True, exist_ok=True)
    segmenter.save(workdir / SEGMENTER_FILENAME)
    log.info("segmentation head saved to %s", workdir / SEGMENTER_FILENAME)
    return segmenter
