"""`trainer.cli validate` scores a kit through a version's ONNX as the line does.

A version with an integer input is sent the camera's pixels (what the preprocessor
sends it), a float version float patches in [0, 1]; both must score a kit alike.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from tests.tiny_inspector import tiny_inspector_onnx
from tests.unit.tiny_dataset import tiny_recipe, write_tiny_dataset


def test_pixel_and_float_graphs_score_a_kit_alike(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import trainer.validate as validate

    monkeypatch.setattr(validate, "load_recipe", lambda _id: tiny_recipe())
    kit = write_tiny_dataset(tmp_path / "kit", products=3, runs=2, defective=(1,))
    (tmp_path / "float.onnx").write_bytes(tiny_inspector_onnx(16))
    (tmp_path / "pixels.onnx").write_bytes(tiny_inspector_onnx(16, bit_depth=8))
    as_float, phi_float = validate.score_kit_with_onnx(tmp_path / "float.onnx", kit, 16)
    as_pixels, phi_pixels = validate.score_kit_with_onnx(tmp_path / "pixels.onnx", kit, 16)
    assert len(as_pixels.scores) == 3 * 2 * 60
    np.testing.assert_array_equal(as_pixels.scores, as_float.scores)
    np.testing.assert_array_equal(phi_pixels, phi_float)
    # every patch of the kit was scored on its own pixels (random noise: no two alike)
    assert np.unique(as_pixels.scores).size == len(as_pixels.scores)
