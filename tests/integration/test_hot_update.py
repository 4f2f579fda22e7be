"""A new version goes live under traffic: explicit load, zero failed requests, new version answers."""
from __future__ import annotations

import threading
import time
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest

from preprocessor.inspector_client import TritonInspector
from tests.integration.triton_support import (
    PATCH, V1_THRESHOLD, V2_GAIN, V2_THRESHOLD, repository_with_v1, triton_installation,
)
from tests.tiny_inspector import publish_tiny_version, random_patches, tiny_inspector_onnx
from vialguard.errors import ModelVersionError
from vialguard.inspector_io import INPUT_PATCHES, OUTPUT_SCORE
from vialguard.model_repository import load_version_calibration, version_dir
from vialguard_stack.rollout import load_version
from vialguard_stack.triton_server import start_triton

pytestmark = pytest.mark.integration


class Traffic(threading.Thread):
    """Acquisitions back to back through the preprocessor's client, recording who answered."""

    def __init__(self, url: str, patches: np.ndarray) -> None:
        super().__init__(daemon=True)
        self.client = TritonInspector(url)
        self.patches = patches
        self.answers: list[tuple[int, np.ndarray]] = []
        self.failures: list[str] = []
        self.halt = threading.Event()

    def run(self) -> None:
        while not self.halt.is_set():
            try:
                result = self.client.infer(self.patches, timeout_s=0.45)  # the line's deadline
                self.answers.append((result.model_version, result.scores))
            except Exception as exc:  # every failure counts, whatever its kind
                self.failures.append(f"{type(exc).__name__}: {exc}")

    def stop(self) -> None:
        self.halt.set()
        self.join(10)
        self.client.close()


def test_a_rolled_out_version_takes_over_without_a_failed_request(tmp_path: Path) -> None:
    repository = repository_with_v1(tmp_path)
    with start_triton(repository, "cpu", installation=triton_installation(), pin_version=1) as server:
        patches = random_patches(60, PATCH, seed=3)
        traffic = Traffic(server.grpc_url, patches)
        traffic.start()
        try:
            time.sleep(0.5)
            v2 = publish_tiny_version(repository, PATCH, V2_GAIN, V2_THRESHOLD)
            rollout = load_version(server.grpc_url, v2, repository, admin_key=server.admin_key)
            print(f"\nmodel switch 1 -> {v2}: {rollout.load_s:.2f} s under traffic")
            time.sleep(0.1)  # let a request already in flight on v1 be answered
            served_before = len(traffic.answers)
            time.sleep(0.5)
        finally:
            traffic.stop()

    versions = [version for version, _ in traffic.answers]
    assert traffic.failures == []
    assert versions[0] == 1 and len(traffic.answers) > served_before > 10
    assert set(versions[served_before:]) == {v2}           # once loaded, only the new version answers
    assert versions == sorted(versions)                     # no answer from v1 after one from v2
    expected = ort.InferenceSession(tiny_inspector_onnx(PATCH, V2_GAIN)).run([OUTPUT_SCORE], {INPUT_PATCHES: patches})
    np.testing.assert_allclose(traffic.answers[-1][1], expected[0], atol=1e-5)
    thresholds = {v: load_version_calibration(repository, v).serving_thresholds.as_mapping()["R0"] for v in (1, v2)}
    assert thresholds == {1: V1_THRESHOLD, v2: V2_THRESHOLD}  # each answer's version has its own thresholds


def test_a_version_that_cannot_serve_is_refused_and_the_served_one_stays(tmp_path: Path) -> None:
    repository = repository_with_v1(tmp_path)
    with start_triton(repository, "cpu", installation=triton_installation(), pin_version=1) as server:
        incomplete = publish_tiny_version(repository, PATCH, V2_GAIN, V2_THRESHOLD)
        (version_dir(repository, incomplete) / "calibration.json").unlink()  # e.g. a hand-copied directory
        with pytest.raises(ModelVersionError, match=r"incomplete, missing \['calibration.json'\]"):
            load_version(server.grpc_url, incomplete, repository, admin_key=server.admin_key)
        corrupt = publish_tiny_version(repository, PATCH, V2_GAIN, V2_THRESHOLD)
        (version_dir(repository, corrupt) / "model.onnx").write_bytes(b"not an onnx graph")
        with pytest.raises(ModelVersionError, match=f"could not load inspector version {corrupt}"):
            load_version(server.grpc_url, corrupt, repository, admin_key=server.admin_key)
        client = TritonInspector(server.grpc_url)
        assert client.infer(random_patches(5, PATCH), timeout_s=5.0).model_version == 1
        client.close()
