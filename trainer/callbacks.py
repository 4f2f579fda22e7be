"""Training callbacks: epoch checkpoints for resume, and sample images in TensorBoard.

Monitoring lives here, not in the GAN's train_step, so the loop stays the paper's.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import keras
import numpy as np
import tensorflow as tf

from trainer.inspector import heatmap_tf
from trainer.perlin import perturb


class EpochCheckpoint(keras.callbacks.Callback):
    """Saves generator, discriminator, both optimizers, the RNG and the epoch counter.

    Saved at the end of every epoch (and every `every_steps` steps if set, so a long
    epoch is not lost whole); on resume the run continues from the last save: the
    optimizers' step counters, hence the learning-rate schedule, carry on where they were.
    """

    def __init__(self, manager: tf.train.CheckpointManager, epoch: tf.Variable, every_steps: int | None = None):
        super().__init__()
        self.manager = manager
        self.epoch = epoch
        self.every_steps = every_steps
        self._steps = 0

    def on_train_batch_end(self, batch: int, logs: dict[str, Any] | None = None) -> None:
        self._steps += 1
        if self.every_steps and self._steps % self.every_steps == 0:
            self.manager.save()

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        self.epoch.assign(epoch + 1)
        self.manager.save()


class SampleImages(keras.callbacks.Callback):
    """Writes, each epoch, a fixed sample's input, perturbed input, reconstructions and heatmap.

    The perturbation is drawn once with its own seed, so successive epochs show the same
    noise and progress is visible by eye.
    """

    def __init__(self, log_dir: Path, samples: np.ndarray, seed: int = 1234, noise: dict[str, Any] | None = None):
        super().__init__()
        self.samples = tf.constant(np.asarray(samples, np.float32))
        rng = tf.random.Generator.from_seed(seed)
        self.perturbed = perturb(self.samples, rng, probability=1.0, **(noise or {})).perturbed
        self.writer = tf.summary.create_file_writer(str(Path(log_dir) / "samples"))

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        generator = self.model.generator
        clean = tf.cast(generator(self.samples, training=False)["x_hat"], tf.float32)
        denoised = tf.cast(generator(self.perturbed, training=False)["x_hat"], tf.float32)
        n = int(self.samples.shape[0])
        with self.writer.as_default(step=epoch):
            tf.summary.image("1_input", self.samples, max_outputs=n)
            tf.summary.image("2_reconstruction", clean, max_outputs=n)
            tf.summary.image("3_heatmap", heatmap_tf(self.samples, clean), max_outputs=n)
            tf.summary.image("4_perturbed_input", self.perturbed, max_outputs=n)
            tf.summary.image("5_reconstruction_of_perturbed", denoised, max_outputs=n)
            tf.summary.image("6_heatmap_of_perturbed", heatmap_tf(self.perturbed, denoised), max_outputs=n)
            lr = self.model.g_optimizer.learning_rate
            tf.summary.scalar("learning_rate", lr)
        self.writer.flush()
