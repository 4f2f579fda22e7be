"""The GAN loop learns, and an interrupted run resumes from its last checkpoint."""
from __future__ import annotations

import logging
import os
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras
import numpy as np
import pytest
import tensorflow as tf

from trainer.config import PROFILES, TrainConfig
from trainer.gan import PerturbedGAN
from trainer.networks.discriminator import build_discriminator
from trainer.networks.generator import build_generator
from trainer.schedule import make_optimizer
from trainer.train import TrainingDataError, train

TINY = PROFILES["tiny"]
ITERATIONS_KEY = "g_optimizer/_iterations/.ATTRIBUTES/VARIABLE_VALUE"


def _good_patches(n: int = 32) -> np.ndarray:
    """Smooth periodic 'products': easy to learn, so a few steps show progress."""
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0 : TINY.patch_size, 0 : TINY.patch_size] / TINY.patch_size
    freq, phase = rng.random((2, n, 1, 1)) * 2
    return (0.5 + 0.3 * np.sin(2 * np.pi * (xx[None] * freq + phase)))[..., None].astype(np.float32)


def _dataset(batch: int = 8) -> tf.data.Dataset:
    return tf.data.Dataset.from_tensor_slices(_good_patches()).batch(batch)


def test_a_few_training_steps_reduce_the_reconstruction_loss() -> None:
    keras.utils.set_random_seed(3)
    cfg = TrainConfig(learning_rate=2e-3, batch_size=8, seed=3)
    gan = PerturbedGAN(build_generator(TINY), build_discriminator(TINY), cfg)
    gan.compile(make_optimizer(cfg), make_optimizer(cfg), jit_compile=False)
    history = gan.fit(_dataset().repeat(), epochs=3, steps_per_epoch=8, verbose=0, shuffle=False).history
    print("contextual loss per epoch", history["con_loss"])
    con = history["con_loss"]
    assert con[-1] < 0.95 * con[0], f"contextual loss did not fall: {con}"
    assert all(np.isfinite(history["d_loss"]))
    assert int(gan.g_optimizer.iterations.numpy()) == 24 == int(gan.d_optimizer.iterations.numpy())


def test_interrupted_run_resumes_from_the_saved_epoch_and_step(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    ds = _dataset()  # 4 steps per epoch
    cfg = TrainConfig(epochs=1, batch_size=8, verbose=0, sample_images=2)
    first = train(cfg, TINY, ds, ds, tmp_path)
    ckpt_dir = tmp_path / "checkpoints"
    saved = tf.train.load_checkpoint(str(ckpt_dir))
    assert int(saved.get_tensor(ITERATIONS_KEY)) == 4
    tags = set()
    for events in (tmp_path / "tensorboard" / "samples").iterdir():
        for event in tf.compat.v1.train.summary_iterator(str(events)):
            tags |= {value.tag for value in event.summary.value}
    assert {"1_input", "2_reconstruction", "3_heatmap", "5_reconstruction_of_perturbed"} <= tags

    # Asking again for 1 epoch restores the weights and trains nothing more.
    again = train(cfg, TINY, ds, None, tmp_path)
    for a, b in zip(first.get_weights(), again.get_weights()):
        np.testing.assert_array_equal(a, b)

    # Asking for 2 epochs continues at epoch 2 with the optimizer's step counter intact.
    with caplog.at_level(logging.INFO, logger="trainer.train"):
        train(TrainConfig(epochs=2, batch_size=8, verbose=0, sample_images=0), TINY, ds, None, tmp_path)
    assert "resuming" in caplog.text and "at epoch 1" in caplog.text
    resumed = tf.train.load_checkpoint(str(ckpt_dir))
    assert int(resumed.get_tensor(ITERATIONS_KEY)) == 8
    assert int(resumed.get_tensor("epoch/.ATTRIBUTES/VARIABLE_VALUE")) == 2


def test_dataset_of_wrong_patch_size_is_refused_before_training(tmp_path: Path) -> None:
    wrong = tf.data.Dataset.from_tensor_slices(np.zeros((4, 16, 16, 1), np.float32)).batch(2)
    with pytest.raises(TrainingDataError, match="32, 32, 1"):
        train(TrainConfig(), TINY, wrong, None, tmp_path)
    unbatched = tf.data.Dataset.from_tensor_slices(np.zeros((4, 32, 32, 1), np.float32))
    with pytest.raises(TrainingDataError, match="batch the dataset"):
        train(TrainConfig(), TINY, unbatched, None, tmp_path)
    empty = tf.data.Dataset.from_tensor_slices(np.zeros((0, 32, 32, 1), np.float32)).batch(2)
    with pytest.raises(TrainingDataError, match="empty"):
        train(TrainConfig(), TINY, empty, None, tmp_path)
    endless = tf.data.Dataset.from_tensor_slices(np.zeros((4, 32, 32, 1), np.float32)).batch(2).repeat()
    with pytest.raises(TrainingDataError, match="steps_per_epoch"):
        train(TrainConfig(), TINY, endless, None, tmp_path)
    integers = tf.data.Dataset.from_tensor_slices(np.zeros((4, 32, 32, 1), np.uint8)).batch(2)
    with pytest.raises(TrainingDataError, match="float32"):
        train(TrainConfig(), TINY, integers, None, tmp_path)


class _CountingManager:
    """Stands in for tf.train.CheckpointManager: counts saves."""

    def __init__(self) -> None:
        self.saves = 0

    def save(self) -> None:
        self.saves += 1


def test_checkpoints_are_saved_each_epoch_and_every_n_steps_when_asked() -> None:
    from trainer.callbacks import EpochCheckpoint

    manager, epoch = _CountingManager(), tf.Variable(0, dtype=tf.int64)
    callback = EpochCheckpoint(manager, epoch, every_steps=3)  # type: ignore[arg-type]
    for step in range(7):
        callback.on_train_batch_end(step)
    assert manager.saves == 2
    callback.on_epoch_end(0)
    assert manager.saves == 3 and int(epoch.numpy()) == 1
