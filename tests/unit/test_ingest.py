"""Ingestion: acquisitions -> patches cut by vialguard.patching -> shards + index."""
from __future__ import annotations

import json
import os
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np
import pytest
import tensorflow as tf

from tests.unit.tiny_dataset import tiny_recipe, write_tiny_dataset
from trainer.ingest import IngestOptions, ingest
from trainer.patch_records import feature_spec, quantise
from trainer.product_split import split_products
from trainer.shard_index import IngestError, load_index, source_digest
from vialguard import dataset as acquisitions
from vialguard.patching import cut_frame, rank_images


def _records(path: Path, compression: str) -> list[dict]:
    out = []
    for raw in tf.data.TFRecordDataset(str(path), compression_type=compression):
        parsed = tf.io.parse_single_example(raw, feature_spec())
        out.append({k: (v.numpy().decode() if v.dtype == tf.string and k != "patch" else v.numpy())
                    for k, v in parsed.items()})
    return out


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_tiny_dataset(tmp_path_factory.mktemp("ds"), products=5, runs=2, defective=(4,))


def test_training_ingest_keeps_16_frames_plus_2_rank_images_of_good_products_only(dataset, tmp_path):
    index = ingest(dataset, tmp_path, tiny_recipe(), IngestOptions(frames="all+rank", shard_size=100))
    good_acquisitions = 4 * 2
    assert index.patches_per_acquisition == 18 * 20
    assert index.count(None) == good_acquisitions * 18 * 20
    products = set(index.splits["train"].products) | set(index.splits["validation"].products)
    assert products == {"p000", "p001", "p002", "p003"}


def test_stored_patches_equal_the_patching_module_cut_bit_for_bit(dataset, tmp_path):
    recipe = tiny_recipe()
    index = ingest(dataset, tmp_path, recipe, IngestOptions(frames="all+rank", shard_size=10_000, val_fraction=0,
                                                            compression="GZIP"))
    records = _records(tmp_path / index.splits["train"].shards[0].file, "GZIP")
    first = next(iter(acquisitions.iter_acquisitions(dataset)))
    frames = np.asarray(acquisitions.load_frames(dataset, first))
    low, high = rank_images(frames)
    expected = np.concatenate([cut_frame(img, recipe) for img in [*frames, low, high]])
    mine = [r for r in records if r["acquisition_id"] == first.acquisition_id]
    got = np.stack([np.frombuffer(r["patch"], np.uint8).reshape(16, 16, 1) for r in mine])
    np.testing.assert_array_equal(got, quantise(expected, 8))
    assert [r["image_kind"] for r in mine[-40:]] == ["rank_min"] * 20 + ["rank_max"] * 20
    assert [(r["vial"], r["region"]) for r in mine[:20]] == [(v, g) for v in range(5) for g in range(4)]


def test_inspected_ingest_labels_each_patch_and_keeps_serving_patch_order(dataset, tmp_path):
    index = ingest(dataset, tmp_path, tiny_recipe(), IngestOptions(frames="inspected", val_fraction=0))
    assert index.patches_per_acquisition == 60
    records = [r for s in index.splits["train"].shards for r in _records(tmp_path / s.file, "")]
    assert len(records) == 5 * 2 * 60
    defective = [r for r in records if r["acquisition_label"] == 1]
    assert {r["product_id"] for r in defective} == {"p004"}
    flagged = {(r["frame_index"], r["vial"], r["region"]) for r in records if r["label"] == 1}
    assert flagged == {(f, 1, 2) for f in (0, 7, 15)}
    assert index.splits["train"].counts["R2"]["defective"] == 2 * 3
    assert [r["frame_slot"] * 20 + r["vial"] * 4 + r["region"] for r in records[:60]] == list(range(60))


def test_profile_patch_size_resizes_through_the_patching_module(dataset, tmp_path):
    recipe = tiny_recipe()
    index = ingest(dataset, tmp_path, recipe, IngestOptions(frames="inspected", patch_size=32, val_fraction=0))
    record = _records(tmp_path / index.splits["train"].shards[0].file, "")[0]
    first = next(iter(acquisitions.iter_acquisitions(dataset)))
    frame0 = np.asarray(acquisitions.load_frames(dataset, first))[0]
    assert index.patch_size == 32 and (record["height"], record["width"]) == (32, 32)
    expected = quantise(cut_frame(frame0, recipe, 32)[:1], 8)[0]
    np.testing.assert_array_equal(np.frombuffer(record["patch"], np.uint8).reshape(32, 32, 1), expected)


def test_shards_hold_at_most_shard_size_patches_and_counts_add_up(dataset, tmp_path):
    index = ingest(dataset, tmp_path, tiny_recipe(), IngestOptions(shard_size=128, val_fraction=0.3))
    for split in index.splits.values():
        assert all(s.count <= 128 for s in split.shards)
        assert sum(s.count for s in split.shards) == split.patches
        assert sum(c["good"] + c["defective"] for c in split.counts.values()) == split.patches
        for s in split.shards:
            assert sum(1 for _ in tf.data.TFRecordDataset(str(tmp_path / s.file))) == s.count


def test_split_is_by_product_and_deterministic(dataset, tmp_path):
    a = ingest(dataset, tmp_path / "a", tiny_recipe(), IngestOptions(val_fraction=0.3, seed=7))
    b = ingest(dataset, tmp_path / "b", tiny_recipe(), IngestOptions(val_fraction=0.3, seed=7))
    train, val = set(a.splits["train"].products), set(a.splits["validation"].products)
    assert train and val and not train & val
    assert a.splits["validation"].products == b.splits["validation"].products
    for name, split in a.splits.items():
        ids = {r["product_id"] for s in split.shards for r in _records(tmp_path / "a" / s.file, "")}
        assert ids == set(split.products), name


def test_split_products_keeps_one_product_on_each_side():
    assignment = split_products([f"p{i}" for i in range(3)], 0.1, seed=0)
    assert sorted(assignment.values()) == ["train", "train", "validation"]
    assert set(split_products(["only"], 0.5, seed=0).values()) == {"train"}


def test_index_records_source_digest_and_recipe_digest(dataset, tmp_path):
    index = ingest(dataset, tmp_path, tiny_recipe())
    saved = json.loads((tmp_path / "index.json").read_text())
    assert saved["source_digest"] == source_digest(dataset) == index.source_digest
    assert saved["recipe_digest"] == tiny_recipe().digest()
    assert load_index(tmp_path).count(None) == index.count(None)


def test_source_digest_changes_when_the_manifest_changes(tmp_path):
    root = write_tiny_dataset(tmp_path / "ds", products=1, runs=1)
    before = source_digest(root)
    with open(root / "manifest.jsonl", "a") as fh:
        fh.write("\n")
    assert source_digest(root) != before


def test_refuses_to_overwrite_an_existing_ingestion_unless_asked(dataset, tmp_path):
    ingest(dataset, tmp_path, tiny_recipe())
    with pytest.raises(IngestError, match="already holds"):
        ingest(dataset, tmp_path, tiny_recipe())
    assert ingest(dataset, tmp_path, tiny_recipe(), overwrite=True).count(None) > 0


def test_refuses_a_dataset_made_with_another_recipe(dataset, tmp_path):
    from vialguard.recipe import load_recipe

    with pytest.raises(IngestError, match="was made with recipe 'tiny-5x4'"):
        ingest(dataset, tmp_path, load_recipe("bfs5-10ml"))


def test_bad_inputs_get_clear_errors(tmp_path):
    with pytest.raises(IngestError, match="not a vialguard dataset"):
        ingest(tmp_path / "nowhere", tmp_path / "out", tiny_recipe())
    with pytest.raises(IngestError, match="frames must be one of"):
        ingest(tmp_path, tmp_path / "out", tiny_recipe(), IngestOptions(frames="some"))
    with pytest.raises(IngestError, match="no ingested patch set"):
        load_index(tmp_path / "missing")
