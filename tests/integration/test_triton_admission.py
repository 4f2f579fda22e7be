"""A real tritonserver with the committed configs: no work for callers that gave up, nothing open to all.

Runs the committed `cpu` version (the real model, not the tiny one), because the
queue policy only shows with inference that takes real time. The figures
asserted are relative to the inference time measured in the same test, so a
busy or a quiet machine gives the same verdict.
"""
from __future__ import annotations

import math
import shutil
import urllib.request
import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import tritonclient.grpc as grpcclient
from tritonclient.utils import InferenceServerException

from preprocessor.inspector_client import TritonInspector
from tests.integration.triton_support import PATCH, repository_with_v1, triton_installation
from tests.tiny_inspector import random_patches
from vialguard.inference import InferenceOverloaded, InferenceTimeout, InferenceUnavailable
from vialguard.inspector_io import MODEL_NAME, NOT_INFERRED_METRIC
from vialguard.model_repository import list_versions, load_version_calibration, version_input_datatype
from vialguard_stack.rollout import admin_headers
from vialguard_stack.triton_server import REPO_ROOT, TritonServer, start_triton

pytestmark = pytest.mark.integration
COMMITTED = REPO_ROOT / "model_repository"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TritonServer]:
    installation = triton_installation()
    versions = list_versions(COMMITTED)
    if not versions:
        pytest.skip("no committed model version")
    repository = tmp_path_factory.mktemp("admission") / "model_repository"
    shutil.copytree(COMMITTED / MODEL_NAME / "configs", repository / MODEL_NAME / "configs")
    shutil.copytree(COMMITTED / MODEL_NAME / str(versions[-1]), repository / MODEL_NAME / str(versions[-1]))
    with start_triton(repository, "cpu", installation=installation, pin_version=versions[-1],
                      ready_timeout_s=180) as running:
        yield running


def patches_for(server: TritonServer) -> np.ndarray:
    version = list_versions(server.repository)[-1]
    side = load_version_calibration(server.repository, version).patch_size
    rng = np.random.default_rng(0)
    if version_input_datatype(server.repository, version) == "UINT8":  # a version that takes camera pixels
        return rng.integers(0, 256, (60, side, side, 1), dtype=np.uint8)
    return rng.random((60, side, side, 1), dtype=np.float32)


def executions(server: TritonServer) -> int:
    client = grpcclient.InferenceServerClient(server.grpc_url)
    try:
        stats = client.get_inference_statistics(MODEL_NAME, as_json=True)["model_stats"]
        return sum(int(s.get("execution_count", 0)) for s in stats)
    finally:
        client.close()


def not_inferred(server: TritonServer) -> int:
    """Requests the backend adapter answered with an error because their caller had gone (its metric)."""
    url = f"http://127.0.0.1:{server.metrics_port}/metrics"
    with urllib.request.urlopen(url, timeout=5) as response:
        text = response.read().decode()
    return int(sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
                   if line.startswith(NOT_INFERRED_METRIC + "{")))


def test_a_burst_past_capacity_is_refused_or_dropped_not_inferred_late(server: TritonServer) -> None:
    """The campaign's case: 30 calls at once with a short deadline; Triton used to run all 30.

    Triton 2.51 alone ran 9-11 of them here (a timed-out sync call is not cancelled on the
    server), most for callers already gone; the version's backend adapter now answers a
    request dequeued past its caller's deadline with an error, so only those dequeued in
    time are inferred, whatever the load does to the inference time. All 30 share one
    deadline, so no more can be inferred than one instance can start before it."""
    patches = patches_for(server)
    inspector = TritonInspector(server.grpc_url)
    inspector.infer(patches, timeout_s=30.0)  # warm
    times = []
    for _ in range(3):
        started = time.perf_counter()
        inspector.infer(patches, timeout_s=30.0)
        times.append(time.perf_counter() - started)
    one_s, fastest_s = float(np.median(times)), min(times)
    deadline_s = max(1.0, 3 * one_s)
    before, refused_before = executions(server), not_inferred(server)
    outcomes: Counter[str] = Counter()
    lock = threading.Lock()

    def call() -> None:
        client = TritonInspector(server.grpc_url)
        try:
            client.infer(patches, timeout_s=max(0.05, deadline_at - time.perf_counter()))
            kind = "ok"
        except InferenceOverloaded:
            kind = "queue full"
        except InferenceTimeout:
            kind = "timeout"
        except InferenceUnavailable as exc:
            kind = f"unavailable: {exc}"
        finally:
            client.close()
        with lock:
            outcomes[kind] += 1

    threads = [threading.Thread(target=call) for _ in range(30)]
    burst = time.perf_counter()
    deadline_at = burst + deadline_s  # one deadline for all, however late a thread starts
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    burst_s = time.perf_counter() - burst
    time.sleep(deadline_s)  # anything Triton would still run has had time to start
    refused = not_inferred(server) - refused_before
    inferred = executions(server) - before - refused
    print(f"\none inference {one_s * 1000:.0f} ms (fastest {fastest_s * 1000:.0f}), deadline {deadline_s:.2f} s: {dict(outcomes)}, "
          f"Triton inferred {inferred} of 30 and refused {refused} past their deadline, "
          f"burst answered in {burst_s:.2f} s")
    assert sum(outcomes.values()) == 30 and not [k for k in outcomes if k.startswith("unavailable")]
    # Only those dequeued before the deadline ran: one instance starts at most one per inference
    # (at its fastest) until the deadline, and one more may be dequeued as it passes. Counting
    # those answered in time instead undercounts on a loaded machine, where answers that
    # came in time reach starved callers late (the full suite: 2 ok, 5 inferred, deadline 1.31 s).
    # Without the adapter's check, CI's load ran 9 with 2 in time and a 0.4 s inference; on a quiet
    # machine Triton's own cancellation keeps within the bound too (5 at 0.41 s, bound 5), so this
    # test catches the leak under load, and tests/unit/test_backend_adapter_deadline.py proves the
    # adapter's decision itself.
    bound = math.floor(deadline_s / fastest_s) + 2
    assert outcomes["ok"] <= inferred <= bound, (inferred, bound, refused, dict(outcomes))
    assert burst_s < deadline_s + 2.0
    started = time.perf_counter()  # and no backlog is left behind: the next call runs at once
    inspector.infer(patches, timeout_s=30.0)
    assert time.perf_counter() - started < 3 * one_s + 0.5
    inspector.close()


def test_model_control_needs_the_admin_key(server: TritonServer) -> None:
    client = grpcclient.InferenceServerClient(server.grpc_url)
    try:
        with pytest.raises(InferenceServerException, match="restricted"):
            client.unload_model(MODEL_NAME)
        with pytest.raises(InferenceServerException, match="restricted"):
            client.get_system_shared_memory_status()
        assert client.is_model_ready(MODEL_NAME)  # the refused unload changed nothing
        assert client.get_model_repository_index(headers=admin_headers(server.admin_key)) is not None
    finally:
        client.close()


def test_every_endpoint_listens_on_loopback_only(server: TritonServer) -> None:
    log = Path(server.log_path).read_text(errors="replace")
    for service in ("GRPCInferenceService", "HTTPService", "Metrics Service"):
        assert f"Started {service} at 127.0.0.1:" in log
    assert "0.0.0.0" not in log


def test_back_to_back_calls_never_stall_in_the_queue(tmp_path: Path) -> None:
    """With a queue policy, Triton 2.51 held ~0.4 % of requests until their timeout on an idle model;
    the committed configs set none. Tiny model: a call takes milliseconds, so a stall stands out."""
    repository = repository_with_v1(tmp_path)
    with start_triton(repository, "cpu", installation=triton_installation(), pin_version=1) as tiny:
        inspector = TritonInspector(tiny.grpc_url)
        patches = random_patches(60, PATCH, seed=2)
        inspector.infer(patches, timeout_s=10.0)
        stalls, calls, until = 0, 0, time.monotonic() + 4.0
        while time.monotonic() < until:
            started = time.monotonic()
            try:
                inspector.infer(patches, timeout_s=0.45)
            except InferenceTimeout:
                pass
            stalls += time.monotonic() - started >= 0.44
            calls += 1
        inspector.close()
    print(f"\n{calls} back-to-back calls, {stalls} held until their deadline")
    assert calls > 100 and stalls == 0


def test_calls_in_flight_when_triton_dies_see_an_outage_never_a_closed_channel(tmp_path: Path) -> None:
    """Issue 7: the reconnect closed the channel other threads were using ("Cannot invoke RPC on closed
    channel!"), which reached the camera as INTERNAL; now each call ends as an outage or a timeout."""
    repository = repository_with_v1(tmp_path)
    tiny = start_triton(repository, "cpu", installation=triton_installation(), pin_version=1)
    inspector = TritonInspector(tiny.grpc_url)  # one client shared by every thread, as in the preprocessor
    patches = random_patches(60, PATCH, seed=4)
    inspector.infer(patches, timeout_s=10.0)
    kinds: Counter[str] = Counter()
    halt = threading.Event()

    def traffic() -> None:
        while not halt.is_set():
            try:
                inspector.infer(patches, timeout_s=1.0)
                kinds["ok"] += 1
            except (InferenceUnavailable, InferenceTimeout):
                kinds["outage"] += 1
            except Exception as exc:  # anything else would have been INTERNAL at the camera
                kinds[f"{type(exc).__name__}: {exc}"] += 1

    threads = [threading.Thread(target=traffic) for _ in range(8)]
    try:
        for thread in threads:
            thread.start()
        time.sleep(1.0)
        tiny.kill()
        time.sleep(2.0)
    finally:
        halt.set()
        for thread in threads:
            thread.join(10)
        inspector.close()
        tiny.kill()
    print(f"\n{dict(kinds)}")
    assert kinds["ok"] > 0 and kinds["outage"] > 0
    assert set(kinds) == {"ok", "outage"}, kinds
