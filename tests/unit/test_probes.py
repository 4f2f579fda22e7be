"""Readiness probes: healthy only when the service really answers; Docker's exit-code contract."""
from __future__ import annotations

import os
import time
from concurrent import futures
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from vialguard_stack import probes
from vialguard_stack.supervisor import free_port


@pytest.fixture
def health_server():
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    servicer = health.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(servicer, server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    yield f"127.0.0.1:{port}", servicer
    server.stop(grace=None)


def test_grpc_probe_passes_only_while_the_server_reports_serving(health_server) -> None:
    target, servicer = health_server
    servicer.set("", health_pb2.HealthCheckResponse.NOT_SERVING)
    ok, reason = probes.grpc_serving(target)
    assert not ok and "NOT_SERVING" in reason
    servicer.set("", health_pb2.HealthCheckResponse.SERVING)
    assert probes.grpc_serving(target)[0]
    assert probes.main(["grpc", target]) == 0


def test_probes_of_unreachable_services_fail_with_a_reason() -> None:
    port = free_port()
    ok, reason = probes.redis_ready("127.0.0.1", port, timeout_s=0.5)
    assert not ok and str(port) in reason
    ok, reason = probes.grpc_serving(f"127.0.0.1:{port}", timeout_s=0.5)
    assert not ok and "UNAVAILABLE" in reason
    ok, reason = probes.http_ready(f"http://127.0.0.1:{port}/v2/health/ready", timeout_s=0.5)
    assert not ok
    ok, reason = probes.consumer_active(f"redis://127.0.0.1:{port}/0", "s", "g", "c", 1000, timeout_s=0.5)
    assert not ok and "redis not answering" in reason
    assert probes.main(["--timeout", "0.5", "redis", f"127.0.0.1:{port}"]) == 1


def test_a_heartbeat_file_is_fresh_only_within_its_age_limit(tmp_path: Path) -> None:
    beat = tmp_path / "heartbeat"
    assert not probes.file_fresh(beat, 30)[0]
    beat.touch()
    assert probes.file_fresh(beat, 30)[0]
    old = time.time() - 60
    os.utime(beat, (old, old))
    ok, reason = probes.file_fresh(beat, 30)
    assert not ok and "limit 30 s" in reason
