"""`python -m preprocessor` as compose runs it: configured from the environment, stopped by SIGTERM.

No Triton is started: the real Triton client meets a closed port, which is the
failure this test is about (health says NOT_SERVING, Inspect says UNAVAILABLE
and names Triton, nothing is queued, the process keeps serving).
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from preprocessor.encode import build_acquisition
from tests.integration.preprocessor_support import RECIPE, random_frames, redis_server  # noqa: F401 (fixture)
from tests.integration.redis_server import REDIS_SERVER, RedisServer, free_port
from vialguard.messages import SCORES_STREAM
from vialguard.patching import select_inspected
from vialguard.v1 import inspection_pb2_grpc as pb_grpc

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(not Path(REDIS_SERVER).exists(), reason="redis-server is not installed"),
]
ROOT = Path(__file__).resolve().parents[2]


def _wait_for_health(channel: grpc.Channel, process: subprocess.Popen[bytes], timeout_s: float = 30.0) -> int:
    stub = health_pb2_grpc.HealthStub(channel)
    deadline = time.monotonic() + timeout_s
    while True:
        assert process.poll() is None, f"the preprocessor exited: {process.stderr.read().decode()}"  # type: ignore[union-attr]
        try:
            return stub.Check(health_pb2.HealthCheckRequest(), timeout=1).status
        except grpc.RpcError:
            assert time.monotonic() < deadline, "the preprocessor never answered its health check"
            time.sleep(0.1)


def test_process_reports_triton_missing_and_stops_cleanly_on_sigterm(redis_server: RedisServer) -> None:
    port, triton_port = free_port(), free_port()
    env = {**os.environ, "VIALGUARD_GRPC_PORT": str(port), "PREPROCESSOR_HOST": "127.0.0.1",
           "VIALGUARD_REDIS_URL": redis_server.url, "VIALGUARD_TRITON_URL": f"127.0.0.1:{triton_port}",
           "PREPROCESSOR_HEALTH_INTERVAL_S": "0.5", "PREPROCESSOR_MAX_MESSAGE_MB": "32"}
    process = subprocess.Popen([sys.executable, "-m", "preprocessor"], cwd=ROOT, env=env,
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    channel = grpc.insecure_channel(f"127.0.0.1:{port}")
    try:
        assert _wait_for_health(channel, process) == health_pb2.HealthCheckResponse.NOT_SERVING
        frames = select_inspected(random_frames(), RECIPE)
        acquisition = build_acquisition("acq-proc", "P-1", 0, RECIPE.id, frames, RECIPE.inspected_frames)
        with pytest.raises(grpc.RpcError) as raised:
            pb_grpc.InspectionStub(channel).Inspect(acquisition, timeout=10)
        assert raised.value.code() == grpc.StatusCode.UNAVAILABLE
        assert f"Triton at 127.0.0.1:{triton_port}" in raised.value.details()
        assert redis_server.client().xlen(SCORES_STREAM) == 0
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=15) == 0
        log = process.stderr.read().decode()  # type: ignore[union-attr]
        assert "finishing calls in flight" in log and "stopped" in log
    finally:
        channel.close()
        if process.poll() is None:
            process.kill()
            process.wait()
