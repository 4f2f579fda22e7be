"""A real tritonserver serving versions that take camera pixels, and an older float version beside them.

Version 1 takes uint8 pixels (scaled in its graph) and ships the heatmap-only graph;
version 2 is an older-style float version without it. The rollout gives each its own
input type; the client sends each what it takes.
"""
from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest

from preprocessor.inspector_client import InferenceRejected, TritonInspector
from tests.integration.triton_support import PATCH, triton_installation
from tests.tiny_inspector import publish_tiny_version, random_pixels, tiny_inspector_onnx
from vialguard.inspector_io import INPUT_PATCHES, OUTPUTS
from vialguard.patching import to_unit_float
from vialguard_stack.rollout import load_version
from vialguard_stack.triton_server import REPO_ROOT, TritonServer, start_triton

pytestmark = pytest.mark.integration
GAIN_PIXELS, GAIN_FLOAT = 1.1, 0.8


@pytest.fixture(scope="module")
def repository(tmp_path_factory: pytest.TempPathFactory) -> Path:
    import shutil

    repository = tmp_path_factory.mktemp("triton-pixels") / "model_repository"
    shutil.copytree(REPO_ROOT / "model_repository" / "inspector" / "configs", repository / "inspector" / "configs")
    assert publish_tiny_version(repository, PATCH, GAIN_PIXELS, 0.2, bit_depth=8) == 1
    assert publish_tiny_version(repository, PATCH, GAIN_FLOAT, 0.2, heatmap_graph=False) == 2
    return repository


@pytest.fixture(scope="module")
def server(repository: Path) -> Iterator[TritonServer]:
    with start_triton(repository, "cpu", installation=triton_installation(), pin_version=1) as running:
        yield running


@pytest.fixture()
def inspector(server: TritonServer) -> Iterator[TritonInspector]:
    client = TritonInspector(server.grpc_url)
    yield client
    client.close()


def reference(gain: float, unit: np.ndarray) -> dict[str, np.ndarray]:
    session = ort.InferenceSession(tiny_inspector_onnx(PATCH, gain), providers=["CPUExecutionProvider"])
    return dict(zip(OUTPUTS, session.run(list(OUTPUTS), {INPUT_PATCHES: unit})))


def test_pixels_are_scored_as_the_float_model_scores_their_scaled_floats(inspector: TritonInspector) -> None:
    pixels = random_pixels(60, PATCH, seed=4)
    assert inspector.input_datatype() == "UINT8" and inspector.heatmaps_apart()
    result = inspector.infer(pixels, timeout_s=10.0)
    want = reference(GAIN_PIXELS, to_unit_float(pixels))
    assert result.model_version == 1 and result.heatmaps is None  # score and phi only came back
    np.testing.assert_array_equal(result.scores, want["score"])
    np.testing.assert_array_equal(result.phi, want["phi"])


def test_the_heatmaps_of_a_few_patches_equal_those_of_the_whole_acquisition(inspector: TritonInspector) -> None:
    pixels = random_pixels(60, PATCH, seed=5)
    flagged = [5, 42]
    heatmaps = inspector.heatmaps(pixels[flagged], model_version=1, timeout_s=10.0)
    whole = inspector.infer(pixels, timeout_s=10.0, heatmaps=True).heatmaps
    assert heatmaps.shape == (2, PATCH, PATCH, 1) and heatmaps.max() == pytest.approx(1.0)
    np.testing.assert_array_equal(heatmaps, whole[flagged])


def test_float_patches_are_refused_by_a_version_that_takes_pixels(inspector: TritonInspector) -> None:
    with pytest.raises(InferenceRejected, match="UINT8"):
        inspector.infer(to_unit_float(random_pixels(60, PATCH)), timeout_s=10.0)


def test_an_older_float_version_gets_the_pixels_scaled_by_the_client(server: TritonServer) -> None:
    """Runs last: rolls the module's server over to version 2."""
    load_version(server.grpc_url, 2, server.repository, config_name="cpu", admin_key=server.admin_key)
    client = TritonInspector(server.grpc_url)
    try:
        pixels = random_pixels(60, PATCH, seed=6)
        assert client.input_datatype() == "FP32" and not client.heatmaps_apart()
        result = client.infer(pixels, timeout_s=10.0, heatmaps=True)
        want = reference(GAIN_FLOAT, to_unit_float(pixels))
        assert result.model_version == 2
        np.testing.assert_array_equal(result.scores, want["score"])
        np.testing.assert_allclose(result.heatmaps, want["heatmap"], atol=1e-6)
    finally:
        client.close()
