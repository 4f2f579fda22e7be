"""A real tritonserver (from .venv-triton) serving the CPU config of `inspector`."""
from __future__ import annotations

import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
import tritonclient.grpc as grpcclient
from tritonclient.utils import InferenceServerException

from preprocessor.inspector_client import InferenceRejected, TritonInspector
from tests.integration.triton_support import PATCH, V1_GAIN, repository_with_v1, triton_installation
from tests.tiny_inspector import random_patches, tiny_inspector_onnx
from vialguard.inference import InferenceUnavailable
from vialguard.inspector_io import INPUT_PATCHES, MODEL_NAME, OUTPUT_HEATMAP, OUTPUT_SCORE
from vialguard_stack.triton_server import TritonServer, start_triton

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def repository(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return repository_with_v1(tmp_path_factory.mktemp("triton"))


@pytest.fixture(scope="module")
def server(repository: Path) -> Iterator[TritonServer]:
    installation = triton_installation()
    with start_triton(repository, "cpu", installation=installation, pin_version=1) as running:
        print(f"\ntritonserver ready and version 1 pinned in {running.started_s:.2f} s")
        yield running


@pytest.fixture()
def inspector(server: TritonServer) -> Iterator[TritonInspector]:
    client = TritonInspector(server.grpc_url)
    yield client
    client.close()


def test_sixty_patches_score_exactly_as_onnx_runtime_does(inspector: TritonInspector) -> None:
    patches = random_patches(60, PATCH, seed=1)
    inspector.infer(patches, timeout_s=10.0)  # first call warms the stub up
    started = time.perf_counter()
    result = inspector.infer(patches, timeout_s=2.0, heatmaps=True)
    print(f"Triton infer, 60 patches of {PATCH}px: {(time.perf_counter() - started) * 1000:.1f} ms")
    direct = ort.InferenceSession(tiny_inspector_onnx(PATCH, V1_GAIN))
    scores, heatmaps = direct.run([OUTPUT_SCORE, OUTPUT_HEATMAP], {INPUT_PATCHES: patches})
    assert result.scores.shape == (60,) and result.heatmaps.shape == patches.shape
    assert np.abs(result.scores).sum() > 0 and result.heatmaps.max() == pytest.approx(1.0)  # not empty, not zeros
    np.testing.assert_allclose(result.scores, scores, atol=1e-5)
    np.testing.assert_allclose(result.heatmaps, heatmaps, atol=1e-5)


def test_the_answer_names_the_version_that_served_it(inspector: TritonInspector) -> None:
    result = inspector.infer(random_patches(3, PATCH), timeout_s=5.0)
    assert (result.model_name, result.model_version) == (MODEL_NAME, 1)


def test_patch_size_is_read_from_the_served_version(inspector: TritonInspector) -> None:
    assert inspector.patch_size() == PATCH


@pytest.mark.parametrize(
    ("bad", "words"),
    [
        (np.zeros((4, PATCH // 2, PATCH // 2, 1), np.float32), "shape"),
        (np.full((4, PATCH, PATCH, 1), 2.0, np.float32), "[0, 1]"),
        (np.full((4, PATCH, PATCH, 1), np.nan, np.float32), "NaN"),
    ],
    ids=["wrong-patch-side", "out-of-range", "nan"],
)
def test_a_bad_request_fails_alone_with_a_clear_reason(inspector: TritonInspector, bad: np.ndarray, words: str) -> None:
    good = random_patches(60, PATCH, seed=2)
    with ThreadPoolExecutor(4) as pool:
        goods = [pool.submit(inspector.infer, good, 10.0) for _ in range(3)]
        failing = pool.submit(inspector.infer, bad, 10.0)
        with pytest.raises(InferenceRejected, match="refused the patches") as caught:
            failing.result()
        assert words in str(caught.value)
        assert all(f.result().scores.shape == (60,) for f in goods)


def test_a_wrong_dtype_is_refused_by_triton_before_the_model(server: TritonServer) -> None:
    client = grpcclient.InferenceServerClient(server.grpc_url)
    tensor = grpcclient.InferInput(INPUT_PATCHES, [2, PATCH, PATCH, 1], "FP64")
    tensor.set_data_from_numpy(np.zeros((2, PATCH, PATCH, 1), np.float64))
    with pytest.raises(InferenceServerException, match="expects 'FP32'"):
        client.infer(MODEL_NAME, [tensor], client_timeout=5.0)
    client.close()


def test_more_patches_than_the_batch_limit_are_refused(inspector: TritonInspector) -> None:
    with pytest.raises(InferenceRejected, match="batch-size must be <= 64"):
        inspector.infer(random_patches(65, PATCH), timeout_s=5.0)


def test_the_client_reconnects_after_triton_restarts(repository: Path, server: TritonServer) -> None:
    """Runs last in this module: it replaces the module's server with a restarted one on the same ports."""
    client = TritonInspector(server.grpc_url)
    assert client.infer(random_patches(60, PATCH), timeout_s=5.0).model_version == 1
    server.kill()
    with pytest.raises(InferenceUnavailable, match="did not answer"):
        client.infer(random_patches(60, PATCH), timeout_s=0.5)
    restarted = start_triton(repository, "cpu", installation=triton_installation(), grpc_port=server.grpc_port,
                             http_port=server.http_port, metrics_port=server.metrics_port)
    try:
        result = client.infer(random_patches(60, PATCH), timeout_s=10.0)
        assert result.model_version == 1 and result.scores.shape == (60,)
    finally:
        client.close()
        restarted.stop()
