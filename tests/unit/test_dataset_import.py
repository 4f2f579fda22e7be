"""Importing a line's own acquisitions from good/<product>/<run>/*.png into the dataset format."""
from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from vialguard.dataset import iter_acquisitions, load_frames, read_header
from vialguard.dataset_import import import_folder, plan_import
from vialguard.errors import DatasetError
from vialguard.patching import select_inspected
from vialguard.recipe import load_recipe

RECIPE = load_recipe()


def _write_run(folder: Path, frames: int, value: int = 120, shape: tuple[int, ...] | None = None,
               dtype: type = np.uint8) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    shape = shape or (RECIPE.frame_height, RECIPE.frame_width)
    for i in range(frames):
        cv2.imwrite(str(folder / f"frame{i:02d}.png"), np.full(shape, value + i, dtype))


def test_three_frame_runs_import_and_serve_as_the_inspected_frames(tmp_path: Path) -> None:
    src = tmp_path / "line"
    for run in ("run-a", "run-b"):
        _write_run(src / "good" / "G1" / run, 3)
        _write_run(src / "defective" / "D1" / run, 3, value=60)
    (src / "defective" / "D1" / "defects.json").write_text(json.dumps(
        [{"kind": "stuck_particle", "vial": 2, "region": 3, "severity": 0.4}]))
    header = import_folder(src, tmp_path / "ds", RECIPE)
    assert header.counts["acquisitions"] == 4 and header.counts["defects_by_kind"] == {"stuck_particle": 2}
    records = list(iter_acquisitions(tmp_path / "ds"))
    assert [r.run_index for r in records if r.product_id == "G1"] == [0, 1]
    frames = load_frames(tmp_path / "ds", records[0])
    inspected = select_inspected(frames, RECIPE)
    assert [int(f[0, 0]) for f in inspected] == [120, 121, 122]  # in the order of their file names
    assert read_header(tmp_path / "ds").recipe_id == RECIPE.id


def test_a_defective_product_without_defects_json_counts_as_unspecified(tmp_path: Path) -> None:
    src = tmp_path / "line"
    _write_run(src / "defective" / "D9" / "r1", 16)
    import_folder(src, tmp_path / "ds", RECIPE)
    (record,) = iter_acquisitions(tmp_path / "ds")
    assert record.label == "defective" and record.defects[0].kind == "unspecified"


@pytest.mark.parametrize("problem, match", [
    ("count", "holds 5 PNG frames"),
    ("size", "recipe 'bfs5-10ml' frames are 1280x1024"),
    ("depth", "is 16-bit"),
    ("layout", "only good/ and defective/"),
    ("twice", "both in good/ and defective/"),
])
def test_wrong_input_is_refused_with_what_to_fix(tmp_path: Path, problem: str, match: str) -> None:
    src = tmp_path / "line"
    if problem == "count":
        _write_run(src / "good" / "G1" / "r1", 5)
    elif problem == "size":
        _write_run(src / "good" / "G1" / "r1", 3, shape=(100, 200))
    elif problem == "depth":
        _write_run(src / "good" / "G1" / "r1", 3, dtype=np.uint16)
    elif problem == "layout":
        _write_run(src / "goods" / "G1" / "r1", 3)
    else:
        _write_run(src / "good" / "G1" / "r1", 3)
        _write_run(src / "defective" / "G1" / "r1", 3)
    with pytest.raises(DatasetError, match=match):
        import_folder(src, tmp_path / "ds", RECIPE)
    assert not (tmp_path / "ds").exists() and not (tmp_path / "ds.partial").exists()  # nothing left behind


def test_an_empty_folder_says_what_layout_it_expects(tmp_path: Path) -> None:
    (tmp_path / "line").mkdir()
    with pytest.raises(DatasetError, match="good/<product>/<run>"):
        plan_import(tmp_path / "line", RECIPE)
