"""The GAN wrapper of paper 6.1.3 / 7.3: one keras.Model holding generator and discriminator.

Each train_step augments the clean batch X (rotation, vertical-axis flip), perturbs it
with Perlin noise (X_n, M, N), then
  1. updates the generator on w1*adv + w2*con + w3*enc + w4*nse, where the generator
     reconstructs X from X_n and the adversarial term matches the discriminator's
     features of X and X_hat;
  2. updates the discriminator on real X vs reconstructed X_hat.
test_step reconstructs the clean validation batch without perturbation: it measures
what the inspector will see in production.

Randomness comes from a seeded tf.random.Generator that is checkpointed with the run.
"""
from __future__ import annotations

from typing import Any

import keras
import tensorflow as tf

from trainer.augment import random_augment
from trainer.config import TrainConfig
from trainer.losses import GeneratorLosses, discriminator_loss, generator_loss
from trainer.perlin import perturb
from trainer.ssim_tf import ssim

METRIC_NAMES = ("g_loss", "adv_loss", "con_loss", "enc_loss", "nse_loss", "d_loss", "ssim")


def patches_from(data: Any) -> tf.Tensor:
    """The clean patches of a dataset element: a tensor, (x, ...) tuple or {"patches": x}."""
    if isinstance(data, dict):
        data = data["patches"]
    elif isinstance(data, (tuple, list)):
        data = data[0]
    return tf.cast(data, tf.float32)


def _for_gradients(loss: tf.Tensor) -> tf.Tensor:
    """Divide by the replica count: tf.distribute sums gradients across replicas."""
    replicas = tf.distribute.get_strategy().num_replicas_in_sync
    return loss / replicas if replicas > 1 else loss


class PerturbedGAN(keras.Model):
    """Generator + discriminator trained together; `generator` is what gets exported."""

    def __init__(self, generator: keras.Model, discriminator: keras.Model, config: TrainConfig, **kwargs: Any):
        super().__init__(**kwargs)
        self.generator = generator
        self.discriminator = discriminator
        self.config = config
        self.rng = tf.random.Generator.from_seed(config.seed)
        self.trackers = {name: keras.metrics.Mean(name=name) for name in METRIC_NAMES}

    def compile(  # type: ignore[override]
        self,
        g_optimizer: keras.optimizers.Optimizer,
        d_optimizer: keras.optimizers.Optimizer,
        **kwargs: Any,
    ) -> None:
        """Two optimizers, wrapped for loss scaling when the policy is mixed_float16."""
        super().compile(**kwargs)
        if keras.config.dtype_policy().name == "mixed_float16":
            if not isinstance(g_optimizer, keras.optimizers.LossScaleOptimizer):
                g_optimizer = keras.optimizers.LossScaleOptimizer(g_optimizer)
            if not isinstance(d_optimizer, keras.optimizers.LossScaleOptimizer):
                d_optimizer = keras.optimizers.LossScaleOptimizer(d_optimizer)
        self.g_optimizer = g_optimizer
        self.d_optimizer = d_optimizer
        # Create the optimizer slots now, eagerly: created inside the first traced step
        # they make tf.function trace train_step twice, which triples start-up time.
        g_optimizer.build(self.generator.trainable_variables)
        d_optimizer.build(self.discriminator.trainable_variables)

    @property
    def metrics(self) -> list[keras.metrics.Metric]:
        return list(self.trackers.values())

    def call(self, x: tf.Tensor, training: bool = False) -> dict[str, tf.Tensor]:
        return self.generator(x, training=training)

    def _update(self, values: dict[str, tf.Tensor]) -> dict[str, tf.Tensor]:
        for name, value in values.items():
            self.trackers[name].update_state(value)
        return {name: tracker.result() for name, tracker in self.trackers.items()}

    def _generator_losses(self, x: tf.Tensor, x_perturbed: tf.Tensor, noise: tf.Tensor, training: bool) -> tuple[GeneratorLosses, dict[str, tf.Tensor]]:
        out = self.generator(x_perturbed, training=training)
        real = self.discriminator(x, training=training)
        fake = self.discriminator(out["x_hat"], training=training)
        losses = generator_loss(
            self.config, x, x_perturbed, noise, out["x_hat"], out["z"], out["z_hat"],
            real["features"], fake["features"],
        )
        return losses, out

    def train_step(self, data: Any) -> dict[str, tf.Tensor]:
        x = patches_from(data)
        cfg = self.config
        x = random_augment(x, self.rng, cfg.max_rotation, cfg.vertical_flip).images
        pert = perturb(x, self.rng, cfg.perturb_probability, cfg.perlin_resolutions, cfg.perlin_threshold, cfg.noise_opacity)

        g_vars = self.generator.trainable_variables
        with tf.GradientTape() as tape:
            losses, out = self._generator_losses(x, pert.perturbed, pert.noise, training=True)
            scaled = self.g_optimizer.scale_loss(_for_gradients(losses.total))
        self.g_optimizer.apply_gradients(zip(tape.gradient(scaled, g_vars), g_vars))

        x_hat = tf.stop_gradient(out["x_hat"])
        d_vars = self.discriminator.trainable_variables
        with tf.GradientTape() as tape:
            real = self.discriminator(x, training=True)["logits"]
            fake = self.discriminator(x_hat, training=True)["logits"]
            d_loss = discriminator_loss(real, fake)
            scaled = self.d_optimizer.scale_loss(_for_gradients(d_loss))
        self.d_optimizer.apply_gradients(zip(tape.gradient(scaled, d_vars), d_vars))

        return self._update(self._metric_values(losses, d_loss, x, x_hat))

    def test_step(self, data: Any) -> dict[str, tf.Tensor]:
        x = patches_from(data)
        losses, out = self._generator_losses(x, x, tf.zeros_like(x), training=False)
        real = self.discriminator(x, training=False)["logits"]
        fake = self.discriminator(out["x_hat"], training=False)["logits"]
        return self._update(self._metric_values(losses, discriminator_loss(real, fake), x, out["x_hat"]))

    @staticmethod
    def _metric_values(losses: GeneratorLosses, d_loss: tf.Tensor, x: tf.Tensor, x_hat: tf.Tensor) -> dict[str, tf.Tensor]:
        return {
            "g_loss": losses.total,
            "adv_loss": losses.adversarial,
            "con_loss": losses.contextual,
            "enc_loss": losses.encoder,
            "nse_loss": losses.noise,
            "d_loss": d_loss,
            "ssim": tf.reduce_mean(ssim(x, x_hat)),
        }
