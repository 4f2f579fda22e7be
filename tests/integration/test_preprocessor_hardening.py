"""The preprocessor under hostile bytes, reused ids, overload and without credentials (issue 7).

A real gRPC server over a real redis-server; Triton is the recording stand-in of
preprocessor_support (the real-Triton side: test_triton_admission.py).
"""
from __future__ import annotations

import subprocess
import threading
import time
from dataclasses import replace
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from preprocessor.encode import build_acquisition
from tests.integration.preprocessor_support import (  # noqa: F401 (fixtures)
    RECIPE, Stack, answer_as_aggregator, close_stack, make_config, open_stack, random_frames, redis_server, stack,
    wait_for_scores,
)
from tests.integration.redis_server import REDIS_SERVER
from vialguard.messages import SCORES_STREAM
from vialguard.patching import select_inspected
from vialguard.v1 import inspection_pb2 as pb
from vialguard.v1 import inspection_pb2_grpc as pb_grpc

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(not Path(REDIS_SERVER).exists(), reason="redis-server is not installed"),
]
INSPECTED = select_inspected(random_frames(), RECIPE)
OTHER = select_inspected(random_frames(seed=1), RECIPE)
METHODS = {"Inspect": "unary", "GetHeatmaps": "unary", "WatchVerdicts": "stream"}


@pytest.fixture(autouse=True)
def clean_state(stack: Stack) -> None:
    stack.redis.flushall()
    stack.inspector.calls, stack.inspector.fail_with, stack.inspector.ready, stack.inspector.delay_s = 0, "", True, 0.0


def acquisition(acquisition_id: str, frames=INSPECTED, encoding: int = pb.RAW) -> pb.Acquisition:  # type: ignore[no-untyped-def]
    return build_acquisition(acquisition_id, "P-1", 0, RECIPE.id, frames, RECIPE.inspected_frames, encoding=encoding)


def inspect(stack: Stack, acq: pb.Acquisition) -> pb.Verdict:
    future = stack.stub.Inspect.future(acq, timeout=10)
    answer_as_aggregator(stack.redis, acq.acquisition_id)
    return future.result()


def error_of(call, *args, **kwargs) -> grpc.RpcError:  # type: ignore[no-untyped-def]
    with pytest.raises(grpc.RpcError) as raised:
        result = call(*args, **kwargs)
        if hasattr(result, "__iter__") and not isinstance(result, (pb.Verdict, pb.HeatmapReply)):
            list(result)
    return raised.value


# ------------------------------------------------------------------ bytes that are not a request
@pytest.mark.parametrize("raw", [b"\xff\xff\xff", b"\x0a\xff\xff\xff\xff\x0f", b"\x0a\x02\xc3\x28", b"\x08"],
                         ids=["bad-tag", "huge-length", "bad-utf8", "truncated-varint"])
@pytest.mark.parametrize("method", sorted(METHODS))
def test_undecodable_bytes_are_invalid_argument_not_internal(stack: Stack, method: str, raw: bytes) -> None:
    path = f"/vialguard.v1.Inspection/{method}"
    if METHODS[method] == "unary":
        call = stack.channel.unary_unary(path, request_serializer=None, response_deserializer=None)
        error = error_of(call, raw, timeout=5)
    else:
        call = stack.channel.unary_stream(path, request_serializer=None, response_deserializer=None)
        error = error_of(call, raw, timeout=5)
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT, error.details()
    assert "not a valid protobuf message" in error.details()
    assert stack.redis.xlen(SCORES_STREAM) == 0


def test_undecodable_health_check_is_invalid_argument(stack: Stack) -> None:
    call = stack.channel.unary_unary("/grpc.health.v1.Health/Check", request_serializer=None,
                                     response_deserializer=None)
    assert error_of(call, b"\xff\xff", timeout=5).code() == grpc.StatusCode.INVALID_ARGUMENT


# ------------------------------------------------------------------ every field bounded before it is echoed
def test_a_huge_recipe_id_is_failed_precondition_with_a_short_message(stack: Stack) -> None:
    acq = acquisition("acq-recipe")
    acq.recipe_id = "x" * 10_000
    error = error_of(stack.stub.Inspect, acq, timeout=5)
    assert error.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert "10000 characters" in error.details() and len(error.details()) < 400


def test_another_recipe_is_failed_precondition(stack: Stack) -> None:
    acq = acquisition("acq-recipe2")
    acq.recipe_id = "bfs5-2ml"
    error = error_of(stack.stub.Inspect, acq, timeout=5)
    assert error.code() == grpc.StatusCode.FAILED_PRECONDITION and "'bfs5-10ml'" in error.details()


@pytest.mark.parametrize("field", ["acquisition_id", "product_id"])
def test_huge_ids_are_refused_without_being_echoed(stack: Stack, field: str) -> None:
    acq = acquisition("acq-long")
    setattr(acq, field, "y" * 50_000)
    error = error_of(stack.stub.Inspect, acq, timeout=5)
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT and len(error.details()) < 300


def test_too_many_frames_are_refused(stack: Stack) -> None:
    acq = acquisition("acq-many")
    for i in range(40):
        acq.frames.add(index=100 + i)
    error = error_of(stack.stub.Inspect, acq, timeout=5)
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT and "43 frames" in error.details()


def test_watch_and_heatmap_requests_are_bounded(stack: Stack) -> None:
    error = error_of(stack.stub.WatchVerdicts, pb.WatchRequest(after_id="1" * 10_000), timeout=5)
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT and len(error.details()) < 300
    error = error_of(stack.stub.WatchVerdicts, pb.WatchRequest(product_id="p " * 5000), timeout=5)
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT and len(error.details()) < 300
    error = error_of(stack.stub.GetHeatmaps, pb.HeatmapRequest(acquisition_id="z" * 10_000), timeout=5)
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT and len(error.details()) < 300


# ------------------------------------------------------------------ replay integrity
def test_an_identical_retry_replays(stack: Stack) -> None:
    first = inspect(stack, acquisition("acq-same"))
    again = stack.stub.Inspect(acquisition("acq-same"), timeout=5)
    assert again.replayed and again.decision == first.decision and stack.inspector.calls == 1


@pytest.mark.parametrize("encoding", [pb.RAW, pb.PNG])
def test_a_reused_id_with_other_frames_is_refused(stack: Stack, encoding: int) -> None:
    inspect(stack, acquisition("acq-reused"))
    error = error_of(stack.stub.Inspect, acquisition("acq-reused", OTHER, encoding), timeout=5)
    assert error.code() == grpc.StatusCode.ALREADY_EXISTS
    assert "already used for other frames" in error.details()
    assert stack.redis.xlen(SCORES_STREAM) == 1 and stack.inspector.calls == 1


def test_a_reused_id_with_a_corrupt_png_is_refused(stack: Stack) -> None:
    inspect(stack, acquisition("acq-png-reused"))
    bad = acquisition("acq-png-reused", encoding=pb.PNG)
    bad.frames[1].data = bad.frames[1].data[:200]
    assert error_of(stack.stub.Inspect, bad, timeout=5).code() == grpc.StatusCode.ALREADY_EXISTS


def test_a_first_call_refused_for_its_frames_does_not_fix_the_digest(stack: Stack) -> None:
    bad = acquisition("acq-fixed", encoding=pb.PNG)
    bad.frames[1].data = bad.frames[1].data[:200]  # a corrupt PNG: refused at decoding, after the claim
    assert error_of(stack.stub.Inspect, bad, timeout=5).code() == grpc.StatusCode.INVALID_ARGUMENT
    verdict = inspect(stack, acquisition("acq-fixed"))  # the corrected resend under the same id
    assert not verdict.replayed and stack.inspector.calls == 1


def test_a_retry_with_other_frames_while_the_first_is_in_flight_is_refused(stack: Stack) -> None:
    first = stack.stub.Inspect.future(acquisition("acq-race"), timeout=10)
    wait_for_scores(stack.redis, "acq-race")
    error = error_of(stack.stub.Inspect, acquisition("acq-race", OTHER), timeout=5)
    assert error.code() == grpc.StatusCode.ALREADY_EXISTS
    answer_as_aggregator(stack.redis, "acq-race")
    assert not first.result().replayed


# ------------------------------------------------------------------ admission control
def test_excess_load_is_shed_at_once_with_resource_exhausted(stack: Stack) -> None:
    own = open_stack(stack.redis_server, replace(make_config(stack.redis_server.url), max_inflight=1,
                                                 admission_wait_ms=0))
    try:
        own.inspector.delay_s = 1.0
        first = own.stub.Inspect.future(acquisition("acq-slot"), timeout=10)
        time.sleep(0.3)  # the first call holds the only inference slot
        started = time.monotonic()
        error = error_of(own.stub.Inspect, acquisition("acq-shed", OTHER), timeout=10)
        assert time.monotonic() - started < 0.5  # refused at once, not after a wait
        assert error.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert "limit of 1 acquisitions in inference" in error.details() and "nothing" in error.details()
        answer_as_aggregator(own.redis, "acq-slot")
        assert first.result().decision == pb.ACCEPT
        own.inspector.delay_s = 0.0
        threading.Thread(target=answer_as_aggregator, args=(own.redis, "acq-shed"), daemon=True).start()
        assert not own.stub.Inspect(acquisition("acq-shed", OTHER), timeout=10).replayed  # shed: inspect afresh
    finally:
        close_stack(own)


def test_calls_beyond_the_thread_pool_and_pending_bound_are_refused_by_grpc(stack: Stack) -> None:
    own = open_stack(stack.redis_server, replace(make_config(stack.redis_server.url), workers=2, max_pending_rpcs=0,
                                                 max_inflight=2))
    try:
        own.inspector.delay_s = 1.0
        calls = [own.stub.Inspect.future(acquisition(f"acq-pool-{i}", OTHER if i % 2 else INSPECTED), timeout=3)
                 for i in range(4)]
        codes = []
        for call in calls:
            try:
                call.result()
                codes.append(grpc.StatusCode.OK)
            except grpc.RpcError as exc:
                codes.append(exc.code())
        assert codes.count(grpc.StatusCode.RESOURCE_EXHAUSTED) >= 2
    finally:
        close_stack(own)


# ------------------------------------------------------------------ authentication and TLS
def test_a_configured_token_is_required_except_for_the_health_check(stack: Stack, tmp_path: Path) -> None:
    token_file = tmp_path / "token"
    token_file.write_text("s3cret-token-of-this-line-0123456789\n")
    own = open_stack(stack.redis_server, replace(make_config(stack.redis_server.url), auth_token_file=str(token_file)))
    try:
        error = error_of(own.stub.Inspect, acquisition("acq-token"), timeout=5)
        assert error.code() == grpc.StatusCode.UNAUTHENTICATED and "Bearer" in error.details()
        error = error_of(own.stub.WatchVerdicts, pb.WatchRequest(), timeout=5,
                         metadata=(("authorization", "Bearer wrong"),))
        assert error.code() == grpc.StatusCode.UNAUTHENTICATED
        health = health_pb2_grpc.HealthStub(own.channel).Check(health_pb2.HealthCheckRequest(), timeout=5)
        assert health.status == health_pb2.HealthCheckResponse.SERVING
        future = own.stub.Inspect.future(acquisition("acq-token"), timeout=10,
                                         metadata=(("authorization", "Bearer s3cret-token-of-this-line-0123456789"),))
        answer_as_aggregator(own.redis, "acq-token")
        assert future.result().decision == pb.ACCEPT
        assert own.redis.xlen(SCORES_STREAM) == 1  # the refused calls queued nothing
    finally:
        close_stack(own)


def _openssl(*args: str) -> None:
    subprocess.run(["openssl", *args], check=True, capture_output=True)


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A CA, a server certificate for 127.0.0.1 and a client certificate, made with the openssl CLI."""
    d = tmp_path_factory.mktemp("pki")
    _openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=vialguard-test-ca",
             "-keyout", str(d / "ca.key"), "-out", str(d / "ca.pem"))
    (d / "san.ext").write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\n")
    for name in ("server", "client"):
        _openssl("req", "-newkey", "rsa:2048", "-nodes", "-subj", f"/CN=vialguard-{name}",
                 "-keyout", str(d / f"{name}.key"), "-out", str(d / f"{name}.csr"))
        _openssl("x509", "-req", "-in", str(d / f"{name}.csr"), "-CA", str(d / "ca.pem"), "-CAkey", str(d / "ca.key"),
                 "-CAcreateserial", "-days", "1", "-extfile", str(d / "san.ext"), "-out", str(d / f"{name}.pem"))
    return d


@pytest.mark.skipif(not Path("/usr/bin/openssl").exists(), reason="openssl CLI not installed")
@pytest.mark.parametrize("mutual", [False, True], ids=["tls", "mutual-tls"])
def test_tls_and_mutual_tls(stack: Stack, pki: Path, mutual: bool) -> None:
    config = replace(make_config(stack.redis_server.url), tls_cert_file=str(pki / "server.pem"),
                     tls_key_file=str(pki / "server.key"), tls_client_ca_file=str(pki / "ca.pem") if mutual else "")
    own = open_stack(stack.redis_server, config)
    target = f"127.0.0.1:{own.server.port}"
    ca = (pki / "ca.pem").read_bytes()
    try:
        plain = pb_grpc.InspectionStub(own.channel)  # the stack's own plaintext channel
        assert error_of(plain.GetHeatmaps, pb.HeatmapRequest(acquisition_id="a"), timeout=5).code() \
            == grpc.StatusCode.UNAVAILABLE
        without_cert = grpc.secure_channel(target, grpc.ssl_channel_credentials(root_certificates=ca))
        with_cert = grpc.secure_channel(target, grpc.ssl_channel_credentials(
            root_certificates=ca, private_key=(pki / "client.key").read_bytes(),
            certificate_chain=(pki / "client.pem").read_bytes()))
        try:
            request = pb.HeatmapRequest(acquisition_id="unknown")
            code = error_of(pb_grpc.InspectionStub(without_cert).GetHeatmaps, request, timeout=5).code()
            assert code == (grpc.StatusCode.UNAVAILABLE if mutual else grpc.StatusCode.NOT_FOUND)
            code = error_of(pb_grpc.InspectionStub(with_cert).GetHeatmaps, request, timeout=5).code()
            assert code == grpc.StatusCode.NOT_FOUND  # reached the handler over TLS
        finally:
            without_cert.close()
            with_cert.close()
    finally:
        close_stack(own)


def test_the_default_listen_address_is_loopback() -> None:
    from preprocessor.config import PreprocessorConfig

    assert PreprocessorConfig().host == "127.0.0.1" and not PreprocessorConfig().reflection
