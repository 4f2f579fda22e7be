"""Versions appear whole or not at all, and their numbers only grow."""
from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from vialguard.calibration import Calibration
from vialguard.decision import RegionThresholds
from vialguard.errors import CalibrationError, ModelVersionError
from vialguard.model_repository import list_versions, load_version_calibration, publish_version


def _calibration(t: float) -> Calibration:
    th = RegionThresholds(t, t, t, t)
    return Calibration(
        profile="cpu", patch_size=128, recipe_id="bfs5-10ml", recipe_digest="sha256:r",
        training_data_digest="sha256:d", thresholds={"patch": th, "strip": th, "run": th},
    )


def _writer(t: float):
    def write(d: Path) -> None:
        (d / "model.onnx").write_bytes(b"onnx")
        _calibration(t).save(d / "calibration.json")
    return write


def test_versions_are_numbered_and_carry_their_own_thresholds(tmp_path: Path) -> None:
    assert publish_version(tmp_path, _writer(0.1)) == 1
    assert publish_version(tmp_path, _writer(0.2)) == 2
    assert list_versions(tmp_path) == [1, 2]
    assert load_version_calibration(tmp_path, 1).serving_thresholds.r0 == pytest.approx(0.1)
    assert load_version_calibration(tmp_path, 2).serving_thresholds.r0 == pytest.approx(0.2)


def test_numbers_only_grow_even_after_a_version_is_removed(tmp_path: Path) -> None:
    publish_version(tmp_path, _writer(0.1))
    publish_version(tmp_path, _writer(0.1))
    shutil.rmtree(tmp_path / "inspector" / "2")
    assert publish_version(tmp_path, _writer(0.1)) == 3


def test_a_failed_write_leaves_nothing_behind(tmp_path: Path) -> None:
    def broken(d: Path) -> None:
        (d / "model.onnx").write_bytes(b"half")
        raise OSError("disk full")

    with pytest.raises(OSError):
        publish_version(tmp_path, broken)
    assert list_versions(tmp_path) == []
    assert not any((tmp_path / ".staging").iterdir())


def test_an_incomplete_version_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ModelVersionError, match="calibration.json"):
        publish_version(tmp_path, lambda d: (d / "model.onnx").write_bytes(b"x"))
    assert list_versions(tmp_path) == []


def test_missing_version_and_broken_calibration_are_clear_errors(tmp_path: Path) -> None:
    with pytest.raises(ModelVersionError, match="no version 4"):
        load_version_calibration(tmp_path, 4)
    publish_version(tmp_path, _writer(0.1))
    (tmp_path / "inspector" / "1" / "calibration.json").write_text("{not json")
    with pytest.raises(CalibrationError, match="not JSON"):
        load_version_calibration(tmp_path, 1)


def test_calibration_round_trips(tmp_path: Path) -> None:
    c = _calibration(0.3)
    c.save(tmp_path / "c.json")
    back = Calibration.load(tmp_path / "c.json")
    assert back.to_json() == c.to_json()
