"""The streaming tf.data pipelines over an ingested patch set."""
from __future__ import annotations

import os
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np
import pytest
import tensorflow as tf

from tests.unit.tiny_dataset import tiny_recipe, write_tiny_dataset
from trainer.ingest import IngestOptions, ingest
from trainer.pipeline import labelled_dataset, steps_per_epoch, training_dataset
from trainer.shard_index import IngestError


@pytest.fixture(scope="module")
def ingested(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = write_tiny_dataset(tmp_path_factory.mktemp("ds"), products=6, runs=2, defective=(5,))
    out = tmp_path_factory.mktemp("train")
    ingest(root, out, tiny_recipe(), IngestOptions(frames="all+rank", shard_size=100, val_fraction=0.34))
    return out


@pytest.fixture(scope="module")
def kit(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = write_tiny_dataset(tmp_path_factory.mktemp("kit"), products=3, runs=2, defective=(1,), seed=3)
    out = tmp_path_factory.mktemp("kit_ingested")
    ingest(root, out, tiny_recipe(), IngestOptions(frames="inspected", shard_size=70, val_fraction=0,
                                                        compression="GZIP"))
    return out


def _graph_ops(ds: tf.data.Dataset) -> set[str]:
    """Op types of the dataset's graph, functions included (public raw op, no private API)."""
    graph = tf.compat.v1.GraphDef.FromString(tf.raw_ops.DatasetToGraphV2(input_dataset=ds._variant_tensor).numpy())
    ops = {node.op for node in graph.node}
    return ops | {node.op for fn in graph.library.function for node in fn.node_def}


def test_training_batches_are_float32_unit_range_with_static_shape(ingested):
    ds = training_dataset(ingested, "train", batch_size=8, shuffle_buffer=64, seed=1, repeat=True)
    assert ds.element_spec == tf.TensorSpec([8, 16, 16, 1], tf.float32)
    batch = next(iter(ds)).numpy()
    assert batch.min() >= 0.0 and batch.max() <= 1.0 and batch.std() > 0.0


def test_streams_from_shard_files_rather_than_memory(ingested):
    graph = _graph_ops(training_dataset(ingested, "train", batch_size=8, seed=1))
    for op in ("ParallelInterleaveDataset", "TFRecordDataset", "ShuffleDataset", "PrefetchDataset"):
        assert any(name.startswith(op) for name in graph), (op, graph)  # V2/V3... suffixes vary by version
    assert "TensorDataset" not in graph and "FromTensorsDataset" not in graph


def test_one_pass_over_many_shards_yields_every_patch_once(ingested):
    from trainer.shard_index import load_index

    index = load_index(ingested)
    assert len(index.splits["train"].shards) > 5
    ds = training_dataset(ingested, "train", batch_size=7, shuffle_buffer=50, seed=0, repeat=False)
    assert sum(int(b.shape[0]) for b in ds) == index.splits["train"].patches


def test_shuffling_mixes_products_within_a_batch(ingested):
    ds = labelled_dataset(ingested, "train", batch_size=10_000)
    _, meta = next(iter(ds))
    in_order = [p.decode() for p in meta["product_id"].numpy()[:64]]
    assert len(set(in_order)) == 1  # ingested order keeps an acquisition together...
    shuffled = training_dataset(ingested, "train", batch_size=64, shuffle_buffer=2000, seed=0)
    first = next(iter(shuffled)).numpy()
    ordered = next(iter(labelled_dataset(ingested, "train", batch_size=64)))[0].numpy()
    assert not np.array_equal(first, ordered)  # ...the training stream does not


def test_train_and_validation_splits_are_disjoint_by_product(ingested):
    def products(split: str) -> set[str]:
        return {p.decode() for _, m in labelled_dataset(ingested, split) for p in m["product_id"].numpy()}

    train, validation = products("train"), products("validation")
    assert train and validation and not train & validation


def test_labelled_dataset_yields_whole_acquisitions_in_serving_order(kit):
    elements = list(labelled_dataset(kit))
    assert len(elements) == 3 * 2
    for patches, meta in elements:
        assert patches.shape == (60, 16, 16, 1)
        assert len(set(meta["acquisition_id"].numpy())) == 1
        order = meta["frame_slot"].numpy() * 20 + meta["vial"].numpy() * 4 + meta["region"].numpy()
        np.testing.assert_array_equal(order, np.arange(60))
    labels = {m["product_id"].numpy()[0].decode(): int(m["acquisition_label"].numpy()[0]) for _, m in elements}
    assert labels == {"p000": 0, "p001": 1, "p002": 0}


def test_labelled_dataset_order_is_stable(kit):
    ids = [[a.decode() for a in m["acquisition_id"].numpy()] for _, m in labelled_dataset(kit, batch_size=25)]
    again = [[a.decode() for a in m["acquisition_id"].numpy()] for _, m in labelled_dataset(kit, batch_size=25)]
    assert ids == again


def test_steps_per_epoch_counts_whole_batches(ingested):
    from trainer.shard_index import load_index

    assert steps_per_epoch(ingested, "train", 32) == load_index(ingested).splits["train"].patches // 32


def test_missing_index_or_split_is_a_clear_error(ingested, tmp_path):
    with pytest.raises(IngestError, match="no ingested patch set"):
        training_dataset(tmp_path)
    with pytest.raises(IngestError, match="not in this index"):
        training_dataset(ingested, "test")
