"""DESIGN invariant 1: the trainer and the preprocessor see the same patches of the same frame.

One simulated acquisition of a defective product goes down both real paths:

- A, the trainer's: written as a simulator dataset, ingested (trainer.ingest,
  'inspected' frames) and read back through trainer.pipeline.labelled_dataset;
- B, the preprocessor's: encoded by preprocessor.encode (PNG and RAW), then the
  servicer's own decode-and-cut step (preprocessor.patches.cut_inspected).

Ingestion stores patches quantised to the recipe's bit depth (trainer.patch_records),
so A is compared with B quantised the same way, bit for bit. At the recipe's own
patch size that quantisation is lossless (B round-trips exactly); at the cpu
profile's size the region is averaged (INTER_AREA) and the stored value is off by
at most half a grey level, as patch_records documents. The simulator's patch
labels must index the same patches (same vial, region and frame slot).
"""
from __future__ import annotations

import os
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np
import pytest

from preprocessor.encode import build_acquisition
from preprocessor.patches import cut_inspected
from trainer.config import get_profile
from trainer.ingest import IngestOptions, ingest
from trainer.patch_records import quantise
from vialguard import dataset as acquisitions
from vialguard.patching import acquisition_labels, to_unit_float
from vialguard.recipe import load_recipe
from vialguard.simulator.kit import make_kit, write_dataset
from vialguard.v1 import inspection_pb2 as pb

pytestmark = pytest.mark.integration

RECIPE = load_recipe()
CPU_PATCH = get_profile("cpu").patch_size
HALF_GREY_LEVEL = 0.5 / 255


@pytest.fixture(scope="module")
def kit(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, acquisitions.AcquisitionRecord, np.ndarray]:
    """One defective acquisition on disk, its record, and its frames as rendered."""
    root = tmp_path_factory.mktemp("one-acquisition") / "kit"
    rendered = list(make_kit(0, 1, runs=1, seed=11, recipe=RECIPE))
    write_dataset(root, iter(rendered), RECIPE, seed=11, generator_params={})
    (record,) = list(acquisitions.iter_acquisitions(root))
    assert record.defects, "the test needs a product with a defect, so that labels can disagree"
    return root, record, rendered[0].frames


def _trainer_path(root: Path, out: Path, patch_size: int) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    from trainer.pipeline import labelled_dataset

    ingest(root, out, RECIPE, IngestOptions(frames="inspected", patch_size=patch_size, val_fraction=0.0))
    (batch,) = list(labelled_dataset(out))
    patches, metadata = batch
    return patches.numpy(), {k: v.numpy() for k, v in metadata.items()}


@pytest.mark.parametrize("patch_size", [CPU_PATCH, RECIPE.patch_size], ids=["cpu-profile", "recipe-size"])
@pytest.mark.parametrize("encoding", [pb.PNG, pb.RAW], ids=["png", "raw"])
def test_trainer_and_preprocessor_cut_the_same_patches_in_the_same_order(
        kit, tmp_path: Path, patch_size: int, encoding: int) -> None:
    root, record, rendered = kit
    on_disk = acquisitions.load_frames(root, record)
    np.testing.assert_array_equal(on_disk, rendered)  # both paths start from the same pixels

    trained_on, metadata = _trainer_path(root, tmp_path / "ingested", patch_size)

    inspected = [on_disk[i] for i in RECIPE.inspected_frames]
    request = build_acquisition(record.acquisition_id, record.product_id, record.run_index, RECIPE.id,
                                inspected, RECIPE.inspected_frames, encoding)
    served = cut_inspected(request.frames, RECIPE, lambda: patch_size).patches
    if patch_size == RECIPE.patch_size:  # native: the camera's pixels go to Triton, the graph scales them
        assert served.dtype == np.uint8
        served = to_unit_float(served)  # = the served graph's scaling, bit for bit (tests/unit/test_onnx_pixel_input.py)

    assert served.shape == trained_on.shape == (RECIPE.patches_per_acquisition, patch_size, patch_size, 1)
    stored = np.rint(trained_on.astype(np.float64) * 255).astype(np.uint8)
    np.testing.assert_array_equal(stored, quantise(served, RECIPE.bit_depth))
    assert float(np.abs(trained_on - served).max()) <= HALF_GREY_LEVEL + 1e-6
    if patch_size == RECIPE.patch_size:  # no resize: storage is lossless, the served floats are grey levels
        np.testing.assert_array_equal(quantise(served, RECIPE.bit_depth).astype(np.float32) / np.float32(255),
                                      served)
        # At native size the patches the model trained on are the line's patches, bit for bit.
        np.testing.assert_array_equal(trained_on, served)

    labels = acquisition_labels(RECIPE)
    assert list(metadata["frame_slot"]) == [p.frame for p in labels]
    assert list(metadata["vial"]) == [p.vial for p in labels]
    assert list(metadata["region"]) == [p.region for p in labels]
    assert list(metadata["frame_index"]) == [RECIPE.inspected_frames[p.frame] for p in labels]


def test_simulator_labels_index_the_patches_the_preprocessor_cuts(kit) -> None:
    root, record, _ = kit
    labels = np.asarray(acquisitions.patch_labels(root, record, RECIPE, CPU_PATCH))
    assert labels.shape == (RECIPE.patches_per_acquisition,) and labels.any() and not labels.all()
    mask = np.zeros((RECIPE.frame_height, RECIPE.frame_width), np.uint8)
    for defect in record.defects:
        mask |= acquisitions.load_mask(root, defect).astype(np.uint8) * 255
    # The mask sent as frames down the preprocessor's path: a patch holds the defect iff it is not all zero.
    request = build_acquisition("mask", "mask", 0, RECIPE.id, [mask] * len(RECIPE.inspected_frames),
                                RECIPE.inspected_frames)
    cut = cut_inspected(request.frames, RECIPE, lambda: CPU_PATCH).patches
    np.testing.assert_array_equal(cut.reshape(len(cut), -1).max(axis=1) > 0, labels)
    for index, patch in enumerate(acquisition_labels(RECIPE)):
        if labels[index]:
            assert any(d.vial == patch.vial and d.region == patch.region for d in record.defects), (
                f"patch {index} (vial {patch.vial}, R{patch.region}) is labelled defective, "
                f"but no defect of {record.acquisition_id} is there")
