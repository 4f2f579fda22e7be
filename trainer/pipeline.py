"""Streaming tf.data input pipelines over an ingested patch set.

Nothing here loads the dataset into memory: shards are opened lazily by
``TFRecordDataset`` and interleaved in parallel, records are shuffled in a
bounded buffer of *serialised* patches (``shuffle_buffer`` x P x P bytes,
e.g. 4096 x 64 KiB = 256 MiB at 256 px), parsed a whole batch at a time, and
prefetched. That is what lets the full 2.8-million-patch set (about 184 GB of
raw pixels at 256 px) stream to a GPU from disk.

- :func:`training_dataset`: shuffled float32 [B,P,P,1] batches for the GAN.
- :func:`labelled_dataset`: (patches, metadata) in the stable order they were
  ingested, for calibration and evaluation. With the default batch size, each
  element is exactly one acquisition in the serving patch order.
"""
from __future__ import annotations

from pathlib import Path

import tensorflow as tf

from trainer.patch_records import parse_batch
from trainer.shard_index import IngestError, ShardIndex, index_path_of, load_index

AUTOTUNE = tf.data.AUTOTUNE
MAX_PARALLEL_SHARDS = 8


def _open(index_path: str | Path, split: str | None) -> tuple[ShardIndex, list[str]]:
    path = index_path_of(index_path)
    index = load_index(path)
    files = [str(p) for p in index.shard_paths(path.parent, split)]
    if not files:
        raise IngestError(f"split '{split}' of {path} has no patches")
    return index, files


def training_dataset(
    index_path: str | Path,
    split: str = "train",
    batch_size: int = 32,
    shuffle_buffer: int = 4096,
    seed: int | None = 0,
    repeat: bool = True,
    drop_remainder: bool | None = None,
) -> tf.data.Dataset:
    """Shuffled batches of patches, float32 [B,P,P,1] in [0, 1].

    Shard order is reshuffled every epoch and up to 8 shards are read at once,
    so one batch mixes products even though each shard holds whole
    acquisitions. ``drop_remainder`` defaults to ``repeat``: an endless stream
    gets a static batch dimension, a finite (validation) pass keeps its last
    partial batch.
    """
    if batch_size < 1 or shuffle_buffer < 1:
        raise ValueError(f"batch size and shuffle buffer must be positive, got {batch_size}, {shuffle_buffer}")
    index, files = _open(index_path, split)
    drop = repeat if drop_remainder is None else drop_remainder
    deterministic = seed is not None
    ds = tf.data.Dataset.from_tensor_slices(files)
    ds = ds.shuffle(len(files), seed=seed, reshuffle_each_iteration=True)
    ds = ds.interleave(
        lambda f: tf.data.TFRecordDataset(f, compression_type=index.compression),
        cycle_length=min(len(files), MAX_PARALLEL_SHARDS),
        block_length=1,
        num_parallel_calls=AUTOTUNE,
        deterministic=deterministic,
    )
    ds = ds.shuffle(shuffle_buffer, seed=seed, reshuffle_each_iteration=True)
    if repeat:
        ds = ds.repeat()
    ds = ds.batch(batch_size, drop_remainder=drop)
    ds = ds.map(
        lambda s: parse_batch(s, index.patch_size, index.bit_depth, with_metadata=False),
        num_parallel_calls=AUTOTUNE,
        deterministic=deterministic,
    )
    return ds.prefetch(AUTOTUNE)


def labelled_dataset(
    index_path: str | Path, split: str | None = None, batch_size: int | None = None
) -> tf.data.Dataset:
    """(patches float32 [B,P,P,1], metadata dict of [B] tensors), in ingestion order.

    ``split=None`` reads every split (a calibration or test kit is usually
    ingested whole). ``batch_size=None`` batches one acquisition per element
    (60 patches for inspected frames), ready for the strip rule.
    Metadata keys are the names in :mod:`trainer.patch_records`.
    """
    index, files = _open(index_path, split)
    size = batch_size or index.patches_per_acquisition
    ds = tf.data.TFRecordDataset(files, compression_type=index.compression, num_parallel_reads=None)
    ds = ds.batch(size)
    ds = ds.map(lambda s: parse_batch(s, index.patch_size, index.bit_depth, with_metadata=True))
    return ds.prefetch(AUTOTUNE)


def steps_per_epoch(index_path: str | Path, split: str = "train", batch_size: int = 32) -> int:
    """Whole batches in one pass over a split (at least 1)."""
    index = load_index(index_path)
    return max(1, index.count(split) // batch_size)
