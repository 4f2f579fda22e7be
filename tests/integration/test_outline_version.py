"""trainer.onnx_outline_graph.validated_outline_version on the committed version: a scratch trial, its
report from `validate` through the new graph, then the version published with that report."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest

from trainer.export import OPSET
from trainer.onnx_outline_graph import OUTLINE_FILENAME, validated_outline_version
from vialguard.inspector_io import INPUT_PATCHES, MANIFEST_FILENAME, ONNX_FILENAME, OUTPUT_PHI, OUTPUT_SCORE
from vialguard.local_score import PatchLayout
from vialguard.model_repository import copy_version, latest_version, list_versions, version_dir
from vialguard.outline import OutlineModel
from vialguard.patching import cut_acquisition_pixels, select_inspected
from vialguard.recipe import load_recipe
from vialguard.simulator.kit import make_kit, write_dataset

REPOSITORY = Path(__file__).resolve().parents[2] / "model_repository"
RECIPE = load_recipe()


def test_a_validated_outline_version_is_published_with_its_own_report(tmp_path: Path) -> None:
    source = latest_version(REPOSITORY)
    if source is None:
        pytest.skip("no committed model version")
    repository = copy_version(REPOSITORY, source, tmp_path / "model_repository")
    kit = tmp_path / "kit"
    write_dataset(kit, make_kit(1, 1, runs=1, seed=5, recipe=RECIPE), RECIPE, 5, {})
    p = RECIPE.patch_size
    outline = OutlineModel((3,), np.zeros((1, 2, p)), np.full((1, 2, p), 0.02), threshold=50.0)

    version = validated_outline_version(repository, source, outline, PatchLayout.from_recipe(RECIPE), OPSET, kit,
                                        tmp_path / "report")

    assert list_versions(repository) == [source, version] and version == source + 1
    published = version_dir(repository, version)
    report = json.loads((published / "report.json").read_text())
    assert report["kit"]["acquisitions"] == 2                      # judged on this kit, through the new graph
    assert (tmp_path / "report" / "report.md").is_file()
    manifest = json.loads((published / MANIFEST_FILENAME).read_text())
    assert manifest["derived_from"]["version"] == source and manifest["outline"]["regions"] == [3]
    assert OutlineModel.from_bytes((published / OUTLINE_FILENAME).read_bytes()).threshold == 50.0
    # the new graph: R3 patches scored at least as high as before, everything else the source's
    shot = next(iter(make_kit(0, 1, runs=1, seed=5, recipe=RECIPE)))
    pixels = cut_acquisition_pixels(select_inspected(shot.frames, RECIPE), RECIPE)
    run = lambda d: ort.InferenceSession(str(d / ONNX_FILENAME), providers=["CPUExecutionProvider"]).run(  # noqa: E731
        [OUTPUT_SCORE, OUTPUT_PHI], {INPUT_PATCHES: pixels})
    (before, phi_before), (after, phi_after) = run(version_dir(repository, source)), run(published)
    np.testing.assert_array_equal(phi_after, phi_before)
    regions = np.tile(np.arange(len(RECIPE.regions)), len(after) // len(RECIPE.regions))
    np.testing.assert_array_equal(after[regions != 3], before[regions != 3])
    assert (after[regions == 3] >= before[regions == 3]).all()
