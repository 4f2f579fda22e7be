"""The on-disk acquisition format: round trip, patch labels via the one patching path, crash safety."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from vialguard.dataset import (
    FORMAT,
    MANIFEST_NAME,
    AcquisitionFields,
    DatasetWriter,
    DefectFields,
    iter_acquisitions,
    load_frames,
    load_mask,
    patch_labels,
    read_header,
)
from vialguard.errors import DatasetError
from vialguard.recipe import load_recipe
from vialguard.simulator.kit import make_kit, write_dataset

RECIPE = load_recipe()


@pytest.fixture(scope="module")
def kit_acquisitions() -> list:
    """One defective product acquired twice, then one good product once."""
    defective = list(make_kit(0, 1, runs=2, seed=21))
    good = list(make_kit(1, 0, runs=1, seed=21))
    return defective + good


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory, kit_acquisitions: list) -> Path:
    root = tmp_path_factory.mktemp("kit") / "data"
    write_dataset(root, iter(kit_acquisitions[:2]), RECIPE, seed=21, generator_params={"kind": "kit"})
    return root


def test_header_names_format_recipe_seed_and_counts(dataset: Path) -> None:
    header = read_header(dataset)
    assert header.format == FORMAT
    assert header.recipe_id == RECIPE.id and header.recipe_digest == RECIPE.digest()
    assert header.seed == 21 and header.generator["kind"] == "kit"
    assert header.counts["acquisitions"] == 2 and header.counts["defective_acquisitions"] == 2


def test_frames_masks_and_fields_survive_the_round_trip(dataset: Path, kit_acquisitions: list) -> None:
    records = list(iter_acquisitions(dataset))
    assert [r.acquisition_id for r in records] == ["P0000-R00", "P0000-R01"]
    for record, original in zip(records, kit_acquisitions):
        assert record.run_index == original.fields.run_index and record.label == "defective"
        assert len(record.frames) == RECIPE.frames_per_acquisition
        assert np.array_equal(load_frames(dataset, record), original.frames)
        for defect, fields, mask in zip(record.defects, original.fields.defects, original.masks):
            assert (defect.kind, defect.vial, defect.region) == (fields.kind, fields.vial, fields.region)
            loaded = load_mask(dataset, defect)
            assert np.array_equal(loaded, mask)
            x, y, w, h = defect.bbox
            ys, xs = np.nonzero(loaded)
            assert (x, y, w, h) == (xs.min(), ys.min(), xs.max() - xs.min() + 1, ys.max() - ys.min() + 1)


@pytest.mark.parametrize("patch_size", [None, 128])
def test_patch_labels_mark_exactly_the_defects_vial_and_region_in_every_inspected_frame(
    dataset: Path, patch_size: int | None
) -> None:
    record = next(iter_acquisitions(dataset))
    labels = patch_labels(dataset, record, RECIPE, patch_size)
    assert labels.dtype == bool and labels.shape == (RECIPE.patches_per_acquisition,)
    n_v, n_r = len(RECIPE.vials), len(RECIPE.regions)
    expected = np.zeros_like(labels)
    for slot in range(len(RECIPE.inspected_frames)):
        for d in record.defects:
            expected[(slot * n_v + d.vial) * n_r + d.region] = True
    assert np.array_equal(labels, expected)


def test_a_good_acquisition_has_no_positive_patch(tmp_path: Path, kit_acquisitions: list) -> None:
    good = kit_acquisitions[2]
    with DatasetWriter(tmp_path / "g", RECIPE, 21, {}) as writer:
        record = writer.add(good.fields, good.frames, good.masks)
    assert not patch_labels(tmp_path / "g", record, RECIPE).any()


def _copy_with_manifest(src: Path, dst: Path, text: str) -> Path:
    dst.mkdir()
    (dst / "dataset.json").write_text((src / "dataset.json").read_text())
    (dst / MANIFEST_NAME).write_text(text)
    return dst


def test_a_manifest_cut_by_a_crash_still_reads_its_complete_lines(dataset: Path, tmp_path: Path) -> None:
    text = (dataset / MANIFEST_NAME).read_text()
    first_end = text.index("\n") + 1
    cut = _copy_with_manifest(dataset, tmp_path / "cut", text[: first_end + 40])
    assert [r.acquisition_id for r in iter_acquisitions(cut)] == ["P0000-R00"]


def test_a_damaged_line_in_the_middle_is_reported_with_its_line_number(dataset: Path, tmp_path: Path) -> None:
    lines = (dataset / MANIFEST_NAME).read_text().splitlines()
    broken = _copy_with_manifest(dataset, tmp_path / "bad", "{not json\n" + lines[1] + "\n")
    with pytest.raises(DatasetError, match="line 1"):
        list(iter_acquisitions(broken))


def test_reader_refuses_a_folder_that_is_not_a_dataset(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match="dataset.json is missing"):
        read_header(tmp_path)
    (tmp_path / "dataset.json").write_text(json.dumps({"format": "something-else/9"}))
    with pytest.raises(DatasetError, match="format"):
        read_header(tmp_path)


def test_writer_refuses_bad_acquisitions_and_an_existing_dataset(dataset: Path, tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match="already holds a dataset"):
        DatasetWriter(dataset, RECIPE, 0, {})
    frames = np.zeros((RECIPE.frames_per_acquisition, RECIPE.frame_height, RECIPE.frame_width), np.uint8)
    mask = np.zeros(frames.shape[1:], bool)
    with DatasetWriter(tmp_path / "w", RECIPE, 0, {}) as writer:
        with pytest.raises(DatasetError, match="frames must be uint8"):
            writer.add(AcquisitionFields("P1", 0, "good"), frames[:5], [])  # neither 16 nor the 3 inspected
        with pytest.raises(DatasetError, match="frames must be uint8"):
            writer.add(AcquisitionFields("P1", 0, "good"), frames.astype(np.uint16), [])
        with pytest.raises(DatasetError, match="a good acquisition with 1 defects"):
            writer.add(AcquisitionFields("P1", 0, "good", (DefectFields("burn", 0, 2, 0.5),)), frames, [mask])
        with pytest.raises(DatasetError, match="1 defects but 0 masks"):
            writer.add(AcquisitionFields("P1", 0, "defective", (DefectFields("burn", 0, 2, 0.5),)), frames, [])
        with pytest.raises(DatasetError, match="outside recipe"):
            writer.add(AcquisitionFields("P1", 0, "defective", (DefectFields("burn", 9, 2, 0.5),)), frames, [mask])
    assert list(iter_acquisitions(tmp_path / "w")) == []
