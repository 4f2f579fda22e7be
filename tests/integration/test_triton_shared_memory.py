"""Patches through system shared memory to a real tritonserver on this host, gRPC as the fallback."""
from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import tritonclient.grpc as grpcclient

from preprocessor.inspector_client import TritonInspector
from preprocessor.shared_inputs import SHM_GRPC_HEADER, SharedInputs, shm_headers
from tests.integration.triton_support import PATCH, triton_installation
from tests.tiny_inspector import publish_tiny_version, random_pixels
from vialguard_stack.triton_server import ADMIN_GRPC_HEADER, REPO_ROOT, TritonServer, start_triton

pytestmark = pytest.mark.integration
REGION_BYTES = 60 * PATCH * PATCH * 4


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TritonServer]:
    import shutil

    repository = tmp_path_factory.mktemp("triton-shm") / "model_repository"
    shutil.copytree(REPO_ROOT / "model_repository" / "inspector" / "configs", repository / "inspector" / "configs")
    publish_tiny_version(repository, PATCH, 1.0, 0.2, bit_depth=8)
    with start_triton(repository, "cpu", installation=triton_installation(), pin_version=1) as running:
        yield running


def registered(server: TritonServer) -> list[str]:
    client = grpcclient.InferenceServerClient(server.grpc_url)
    try:
        status = client.get_system_shared_memory_status(headers=shm_headers(server.shm_key), as_json=True)
        return sorted(region["name"] for region in (status.get("regions") or {}).values())
    finally:
        client.close()


def test_the_header_is_the_one_triton_is_started_with() -> None:
    assert SHM_GRPC_HEADER == ADMIN_GRPC_HEADER


def test_patches_through_shared_memory_score_as_over_grpc(server: TritonServer) -> None:
    shared = SharedInputs(2, REGION_BYTES, shm_headers(server.shm_key))
    over_shm, over_grpc = TritonInspector(server.grpc_url, shared=shared), TritonInspector(server.grpc_url)
    try:
        pixels = random_pixels(60, PATCH, seed=8)
        a, b = over_shm.infer(pixels, timeout_s=10.0), over_grpc.infer(pixels, timeout_s=10.0)
        np.testing.assert_array_equal(a.scores, b.scores)
        assert len(registered(server)) == 2  # the regions were used, not silently skipped
        other = random_pixels(60, PATCH, seed=9)  # a region reused for new patches carries the new ones
        np.testing.assert_array_equal(over_shm.infer(other, timeout_s=10.0).scores,
                                      over_grpc.infer(other, timeout_s=10.0).scores)
    finally:
        over_shm.close(), over_grpc.close()
        shared.close(grpcclient.InferenceServerClient(server.grpc_url))


def test_without_the_shared_memory_key_patches_go_over_grpc(server: TritonServer,
                                                             caplog: pytest.LogCaptureFixture) -> None:
    shared = SharedInputs(1, REGION_BYTES, shm_headers("not-the-key"))
    inspector = TritonInspector(server.grpc_url, shared=shared)
    try:
        with caplog.at_level(logging.WARNING):
            assert inspector.infer(random_pixels(60, PATCH), timeout_s=10.0).scores.shape == (60,)
        assert "over gRPC" in caplog.text
        # and the model-control key is not the shared-memory key: the preprocessor never holds the former
        assert server.admin_key != server.shm_key
    finally:
        inspector.close()
        shared.close()


def test_a_region_triton_forgot_is_registered_again(server: TritonServer) -> None:
    shared = SharedInputs(1, REGION_BYTES, shm_headers(server.shm_key))
    inspector = TritonInspector(server.grpc_url, shared=shared)
    admin = grpcclient.InferenceServerClient(server.grpc_url)
    try:
        pixels = random_pixels(60, PATCH, seed=10)
        want = inspector.infer(pixels, timeout_s=10.0).scores
        admin.unregister_system_shared_memory(headers=shm_headers(server.shm_key))  # as a restart would
        np.testing.assert_array_equal(inspector.infer(pixels, timeout_s=10.0).scores, want)  # fell back to gRPC
        np.testing.assert_array_equal(inspector.infer(pixels, timeout_s=10.0).scores, want)  # registered again
        assert len(registered(server)) == 1
    finally:
        inspector.close()
        shared.close(admin)
        admin.close()


def test_the_pool_needs_a_region(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="at least one region"):
        SharedInputs(0, REGION_BYTES)
