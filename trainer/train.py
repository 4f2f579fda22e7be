"""train(): the paper's GAN training on any tf.data.Dataset of clean patches.

The dataset yields float32 batches [B, P, P, 1] in [0, 1] (or (x, ...) / {"patches": x});
the data pipeline that makes it is someone else's concern. This function picks the
strategy and precision from the hardware, builds the networks for the profile,
resumes from workdir/checkpoints if a previous run was interrupted, and logs to
workdir/tensorboard. It returns the trained generator, always in float32 (weights
copied when it trained in mixed precision), which the exporter wraps in the inspector
graph. It seeds Python, NumPy and TensorFlow with config.seed (keras.utils.set_random_seed).
"""
from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

import keras
import numpy as np
import tensorflow as tf

from trainer.callbacks import EpochCheckpoint, SampleImages
from trainer.config import ModelProfile, TrainConfig
from trainer.gan import PerturbedGAN, patches_from
from trainer.inspector import float32_generator
from trainer.monitoring import RunProgress
from trainer.networks.discriminator import build_discriminator
from trainer.networks.generator import build_generator
from trainer.schedule import make_optimizer
from trainer.strategy import choose_strategy, configure_precision, is_chief, parse_tf_config

log = logging.getLogger(__name__)


class TrainingDataError(ValueError):
    """The training or validation dataset does not yield the patches the profile needs."""


def check_dataset(dataset: tf.data.Dataset, profile: ModelProfile, role: str) -> None:
    """Refuse, before any training, a dataset whose patches do not fit the profile."""
    spec = dataset.element_spec
    if isinstance(spec, dict):
        if "patches" not in spec:
            raise TrainingDataError(f"{role} dataset yields a dict without a 'patches' entry: keys {sorted(spec)}")
        spec = spec["patches"]
    elif isinstance(spec, (tuple, list)):
        spec = spec[0]
    if not isinstance(spec, tf.TensorSpec):
        raise TrainingDataError(f"{role} dataset must yield tensors of patches, got {spec}")
    shape = spec.shape
    want = (profile.patch_size, profile.patch_size, 1)
    if shape.rank != 4 or any(s is not None and s != w for s, w in zip(shape[1:], want)):
        raise TrainingDataError(
            f"{role} dataset yields {shape}; profile '{profile.name}' needs batches [B, {want[0]}, {want[1]}, 1] "
            f"(batch the dataset, and cut patches at the profile's patch_size)"
        )
    if not spec.dtype.is_floating:
        raise TrainingDataError(f"{role} dataset yields {spec.dtype.name}; patches must be float32 in [0, 1]")
    if int(dataset.cardinality()) == 0:
        raise TrainingDataError(f"{role} dataset is empty: there is nothing to {'train on' if role == 'training' else 'validate on'}")


def check_epoch_length(dataset: tf.data.Dataset, steps: int | None, role: str) -> None:
    """An endless (repeated) dataset needs an explicit epoch length, or epoch 1 never ends."""
    if steps is None and int(dataset.cardinality()) == int(tf.data.INFINITE_CARDINALITY):
        setting = "steps_per_epoch" if role == "training" else "validation_steps"
        raise TrainingDataError(f"{role} dataset repeats forever: set {setting} (e.g. patches // batch_size)")


def _first_patches(dataset: tf.data.Dataset, count: int) -> np.ndarray:
    for batch in dataset.take(1):
        return patches_from(batch).numpy()[:count]
    raise TrainingDataError("the dataset is empty: there is nothing to train on")


def _checkpoint_dir(base: Path, chief: bool) -> Path:
    """Multi-worker saves are collective: every worker writes, only the chief's copy is kept."""
    if chief:
        return base
    task = parse_tf_config(os.environ["TF_CONFIG"])["task"]
    return base.parent / f".checkpoints_{task['type']}_{task['index']}"


def train(
    config: TrainConfig,
    profile: ModelProfile,
    train_ds: tf.data.Dataset,
    val_ds: tf.data.Dataset | None,
    workdir: Path,
    extra_callbacks: list[keras.callbacks.Callback] | None = None,
) -> keras.Model:
    """Train (or resume training) the GAN; returns the generator.

    ``extra_callbacks`` run on the chief after the checkpoint (e.g. trainer.monitoring's
    held-out AUROC); the whole run's progress and ETA are always logged.
    """
    check_dataset(train_ds, profile, "training")
    check_epoch_length(train_ds, config.steps_per_epoch, "training")
    if val_ds is not None:
        check_dataset(val_ds, profile, "validation")
        check_epoch_length(val_ds, config.validation_steps, "validation")
    workdir = Path(workdir)
    chief = is_chief(os.environ.get("TF_CONFIG"))
    ckpt_dir = _checkpoint_dir(workdir / config.checkpoint_dirname, chief)
    tb_dir = workdir / config.tensorboard_dirname

    previous_policy = keras.config.dtype_policy()
    precision = configure_precision(config.precision)
    try:
        strategy = choose_strategy()
        log.info("training profile %s with %s, precision %s, %d replica(s)",
                 profile.name, type(strategy).__name__, precision, strategy.num_replicas_in_sync)
        keras.utils.set_random_seed(config.seed)
        with strategy.scope():
            generator = build_generator(profile)
            discriminator = build_discriminator(profile)
            gan = PerturbedGAN(generator, discriminator, config, name="gan")
            # XLA compilation of this graph costs minutes on CPU for little gain.
            gan.compile(make_optimizer(config), make_optimizer(config), jit_compile=False)
            epoch = tf.Variable(0, dtype=tf.int64, trainable=False, name="epoch")
            checkpoint = tf.train.Checkpoint(
                generator=generator, discriminator=discriminator,
                g_optimizer=gan.g_optimizer, d_optimizer=gan.d_optimizer, rng=gan.rng, epoch=epoch,
            )
        manager = tf.train.CheckpointManager(checkpoint, str(ckpt_dir), max_to_keep=config.checkpoints_to_keep)
        if manager.latest_checkpoint:
            checkpoint.restore(manager.latest_checkpoint).assert_existing_objects_matched()
            log.info("resuming from %s at epoch %d", manager.latest_checkpoint, int(epoch.numpy()))
        initial_epoch = int(epoch.numpy())
        if initial_epoch >= config.epochs:
            log.info("checkpoint already at epoch %d of %d: nothing left to train", initial_epoch, config.epochs)
            return _exportable(generator, profile, precision)

        callbacks: list[keras.callbacks.Callback] = [EpochCheckpoint(manager, epoch, config.checkpoint_every_steps)]
        if chief:
            callbacks += [RunProgress(config.epochs, initial_epoch), *(extra_callbacks or [])]
            callbacks.append(keras.callbacks.TensorBoard(str(tb_dir), update_freq="epoch"))
            if config.sample_images > 0:
                samples = _first_patches(val_ds if val_ds is not None else train_ds, config.sample_images)
                callbacks.append(SampleImages(tb_dir, samples, noise=_noise_settings(config)))
        gan.fit(
            train_ds,
            epochs=config.epochs,
            initial_epoch=initial_epoch,
            steps_per_epoch=config.steps_per_epoch,
            validation_data=val_ds,
            validation_steps=config.validation_steps,
            callbacks=callbacks,
            verbose=config.verbose,
            shuffle=False,  # shuffling is the data pipeline's job (tf.data)
        )
        return _exportable(generator, profile, precision)
    finally:
        keras.mixed_precision.set_global_policy(previous_policy)


def _exportable(generator: keras.Model, profile: ModelProfile, precision: str) -> keras.Model:
    """The generator in float32: what export, calibration and ONNX Runtime expect."""
    if precision == "float32":
        return generator
    return float32_generator(generator, profile)


def _noise_settings(config: TrainConfig) -> dict[str, Any]:
    return {
        "resolutions": config.perlin_resolutions,
        "threshold": config.perlin_threshold,
        "opacity": config.noise_opacity,
    }
