"""Learning-rate schedule of paper 7.3: cosine decay with warm restarts.

Each restart begins at 1/3 of the previous maximum (m_mul) after the same period
(t_mul = 1); the period is one pass over the paper's training set by default
(TrainConfig.restart_samples / batch_size optimizer steps).
"""
from __future__ import annotations

import keras

from trainer.config import TrainConfig


def learning_rate_schedule(config: TrainConfig) -> keras.optimizers.schedules.LearningRateSchedule:
    """CosineDecayRestarts from the config: starts at config.learning_rate."""
    return keras.optimizers.schedules.CosineDecayRestarts(
        initial_learning_rate=config.learning_rate,
        first_decay_steps=config.restart_steps,
        t_mul=config.restart_t_mul,
        m_mul=config.restart_m_mul,
        alpha=0.0,
    )


def make_optimizer(config: TrainConfig) -> keras.optimizers.Optimizer:
    """Adam on its own schedule instance (generator and discriminator each get one)."""
    return keras.optimizers.Adam(
        learning_rate=learning_rate_schedule(config),
        beta_1=config.adam_beta_1,
        beta_2=config.adam_beta_2,
    )
