"""The preprocessor as the camera sees it: a real gRPC server over a real redis-server.

Triton is replaced by a recording stand-in and the aggregator's decision by a
verdict the test builds (see preprocessor_support); everything between the
camera's bytes and Redis is the real code.
"""
from __future__ import annotations

import time
from dataclasses import replace
from pathlib import Path

import cv2
import grpc
import numpy as np
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from preprocessor.config import MIB
from preprocessor.encode import build_acquisition
from preprocessor.heatmap_store import HeatmapStore
from preprocessor.service import START_ID_METADATA
from tests.integration.preprocessor_support import (  # noqa: F401 (fixtures)
    MAX_MESSAGE_MB, RECIPE, Stack, answer_as_aggregator, close_stack, make_config, open_stack, random_frames,
    redis_server, stack, wait_for_scores,
)
from tests.integration.redis_server import REDIS_SERVER
from vialguard.heatmap import to_png_gray
from vialguard.patching import cut_acquisition_pixels, to_unit_float
from vialguard.messages import SCORES_STREAM, heatmap_key
from vialguard.patching import acquisition_labels, cut_acquisition, select_inspected
from vialguard.v1 import inspection_pb2 as pb

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(not Path(REDIS_SERVER).exists(), reason="redis-server is not installed"),
]
FRAMES = random_frames()
INSPECTED = select_inspected(FRAMES, RECIPE)


@pytest.fixture(autouse=True)
def clean_state(stack: Stack) -> None:
    stack.redis.flushall()
    stack.inspector.calls, stack.inspector.fail_with, stack.inspector.ready, stack.inspector.delay_s = 0, "", True, 0.0


def acquisition(acquisition_id: str, full: bool = False, product_id: str = "P-1") -> pb.Acquisition:
    if full:
        return build_acquisition(acquisition_id, product_id, 2, RECIPE.id, FRAMES)
    return build_acquisition(acquisition_id, product_id, 2, RECIPE.id, INSPECTED, indices=RECIPE.inspected_frames)


def inspect(stack: Stack, acq: pb.Acquisition, over: tuple[int, ...] = ()) -> pb.Verdict:
    """Inspect, answering as the aggregator while the call waits."""
    future = stack.stub.Inspect.future(acq, timeout=10)
    answer_as_aggregator(stack.redis, acq.acquisition_id, over)
    return future.result()


def rpc_error(call, *args, **kwargs) -> grpc.RpcError:  # type: ignore[no-untyped-def]
    with pytest.raises(grpc.RpcError) as raised:
        call(*args, **kwargs)
    return raised.value


def test_inspect_queues_the_scores_and_returns_the_aggregators_verdict(stack: Stack) -> None:
    acq = acquisition("acq-1", full=True)
    for frame in acq.frames:
        frame.camera_timestamp_ns = 5_000_000 + 1_000 * frame.index
    verdict = inspect(stack, acq)
    queued = wait_for_scores(stack.redis, "acq-1")
    assert queued.camera_timestamp_ns == 5_000_000  # the acquisition's first frame
    labels = acquisition_labels(RECIPE)
    assert (queued.product_id, queued.run_index, queued.recipe_id) == ("P-1", 2, RECIPE.id)
    assert (queued.model_name, queued.model_version) == ("inspector", 7)
    assert [(p.frame, p.vial, p.region) for p in queued.patches] == [(lb.frame, lb.vial, lb.region) for lb in labels]
    np.testing.assert_allclose([p.score for p in queued.patches],
                               to_unit_float(stack.inspector.last_patches).mean(axis=(1, 2, 3)), rtol=1e-6)
    assert verdict.decision == pb.ACCEPT and not verdict.replayed
    assert (verdict.model_name, verdict.model_version, verdict.product_id) == ("inspector", 7, "P-1")
    assert len(verdict.patches) == RECIPE.patches_per_acquisition
    # Patch frames are the camera's sequence indices (0, 7, 15), not slots.
    assert sorted({p.frame for p in verdict.patches}) == list(RECIPE.inspected_frames)
    assert verdict.patches[59].region_id == "R3" and verdict.patches[59].vial == 4
    assert verdict.run_policy.product_decision == pb.PRODUCT_PENDING and verdict.run_policy.k == 7
    t = verdict.timings
    assert t.decode_ms > 0 and t.patching_ms > 0 and t.inference_ms > 0 and t.aggregation_ms == 0.5
    assert t.total_ms >= t.decode_ms + t.patching_ms + t.inference_ms


@pytest.mark.parametrize("full", [True, False], ids=["all-16-frames", "inspected-frames-only"])
def test_patches_sent_to_inference_equal_the_core_patching_bit_for_bit(stack: Stack, full: bool) -> None:
    inspect(stack, acquisition(f"acq-bits-{full}", full=full))
    expected = cut_acquisition_pixels(INSPECTED, RECIPE)  # native size: the camera's pixels, no float copy
    assert stack.inspector.last_patches.dtype == expected.dtype == np.uint8
    assert stack.inspector.last_patches.shape == expected.shape
    assert np.array_equal(stack.inspector.last_patches, expected)
    # what the served graph makes of them is the trainer's float patches, bit for bit
    assert np.array_equal(to_unit_float(stack.inspector.last_patches), cut_acquisition(INSPECTED, RECIPE))


def test_png_frames_give_the_same_patches_as_raw(stack: Stack) -> None:
    acq = build_acquisition("acq-png", "P-1", 0, RECIPE.id, INSPECTED, RECIPE.inspected_frames, encoding=pb.PNG)
    inspect(stack, acq)
    assert np.array_equal(stack.inspector.last_patches, cut_acquisition_pixels(INSPECTED, RECIPE))


def test_repeated_acquisition_id_replays_the_verdict_without_queuing_again(stack: Stack) -> None:
    first = inspect(stack, acquisition("acq-replay"), over=(3,))
    again = stack.stub.Inspect(acquisition("acq-replay"), timeout=5)
    assert again.replayed and not first.replayed
    assert again.decision == first.decision == pb.REJECT
    assert [p.score for p in again.patches] == [p.score for p in first.patches]
    assert stack.redis.xlen(SCORES_STREAM) == 1
    assert stack.inspector.calls == 1


def test_retry_while_the_first_call_waits_shares_its_verdict(stack: Stack) -> None:
    first = stack.stub.Inspect.future(acquisition("acq-twice"), timeout=10)
    wait_for_scores(stack.redis, "acq-twice")
    second = stack.stub.Inspect.future(acquisition("acq-twice"), timeout=10)
    time.sleep(0.3)  # the retry is now waiting too
    answer_as_aggregator(stack.redis, "acq-twice")
    results = [first.result(), second.result()]
    assert sorted(r.replayed for r in results) == [False, True]
    assert stack.redis.xlen(SCORES_STREAM) == 1 and stack.inspector.calls == 1


def test_retry_waiting_on_a_first_call_that_fails_is_told_to_retry(stack: Stack) -> None:
    stack.inspector.delay_s, stack.inspector.fail_with = 0.8, "connection refused"
    first = stack.stub.Inspect.future(acquisition("acq-doomed"), timeout=10)
    time.sleep(0.3)  # the first call holds the claim and is inferring
    second = rpc_error(stack.stub.Inspect, acquisition("acq-doomed"), timeout=10)
    assert first.exception().code() == second.code() == grpc.StatusCode.UNAVAILABLE
    assert "an earlier call with acquisition_id 'acq-doomed' failed" in second.details()
    stack.inspector.delay_s, stack.inspector.fail_with = 0.0, ""
    assert not inspect(stack, acquisition("acq-doomed")).replayed  # the claim was released: inspected afresh


@pytest.mark.parametrize(
    ("change", "code", "words"),
    [
        (lambda a: a.frames.__delitem__(2), grpc.StatusCode.INVALID_ARGUMENT, "[15] missing"),
        (lambda a: setattr(a.frames[1], "width", 1024), grpc.StatusCode.INVALID_ARGUMENT, "expects 1280x1024"),
        (lambda a: setattr(a.frames[0], "data", a.frames[0].data[:-10]), grpc.StatusCode.INVALID_ARGUMENT,
         "truncated"),
        (lambda a: setattr(a, "acquisition_id", ""), grpc.StatusCode.INVALID_ARGUMENT, "acquisition_id is empty"),
        (lambda a: setattr(a, "recipe_id", "bfs5-2ml"), grpc.StatusCode.FAILED_PRECONDITION,
         "runs recipe 'bfs5-10ml'"),
    ],
    ids=["missing-frame", "wrong-width", "truncated-raw", "no-id", "other-recipe"],
)
def test_malformed_acquisition_is_answered_with_a_status_and_nothing_is_queued(
    stack: Stack, change, code: grpc.StatusCode, words: str  # type: ignore[no-untyped-def]
) -> None:
    acq = acquisition("acq-bad")
    change(acq)
    error = rpc_error(stack.stub.Inspect, acq, timeout=5)
    assert error.code() == code
    assert words in error.details()
    assert stack.redis.xlen(SCORES_STREAM) == 0 and stack.inspector.calls == 0


def test_oversize_message_is_resource_exhausted_naming_the_limit(stack: Stack) -> None:
    acq = acquisition("acq-huge")
    acq.frames[0].data = bytes(MAX_MESSAGE_MB * MIB)  # with the other frames: over the limit
    error = rpc_error(stack.stub.Inspect, acq, timeout=10)
    assert error.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert "larger than max" in error.details() and str(MAX_MESSAGE_MB * MIB) in error.details()
    assert stack.redis.xlen(SCORES_STREAM) == 0
    assert inspect(stack, acquisition("acq-after-huge")).decision == pb.ACCEPT  # the server is unharmed


def test_inference_slower_than_the_deadline_is_deadline_exceeded_not_an_outage(stack: Stack) -> None:
    # The server's own deadline (300 ms, the caller sets none) runs out while Triton is still busy.
    own = open_stack(stack.redis_server, replace(make_config(stack.redis_server.url), deadline_ms=300))
    own.inspector.delay_s, own.inspector.times_out = 0.4, True
    try:
        error = rpc_error(own.stub.Inspect, acquisition("acq-slow-triton"))
    finally:
        close_stack(own)
    assert error.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    assert "inference did not finish before the deadline" in error.details()
    assert "nothing was queued" in error.details()
    assert stack.redis.xlen(SCORES_STREAM) == 0


def test_inference_server_down_is_unavailable_and_a_retry_inspects_afresh(stack: Stack) -> None:
    stack.inspector.fail_with = "connection refused"
    error = rpc_error(stack.stub.Inspect, acquisition("acq-triton"), timeout=5)
    assert error.code() == grpc.StatusCode.UNAVAILABLE
    assert "inference server" in error.details() and "nothing was queued" in error.details()
    assert stack.redis.xlen(SCORES_STREAM) == 0
    stack.inspector.fail_with = ""
    assert not inspect(stack, acquisition("acq-triton")).replayed


def test_deadline_is_honoured_and_the_late_verdict_is_replayed_on_retry(stack: Stack) -> None:
    started = time.monotonic()
    error = rpc_error(stack.stub.Inspect, acquisition("acq-late"), timeout=0.8)
    elapsed = time.monotonic() - started
    assert error.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    assert 0.6 < elapsed < 1.5
    assert "retry with the same acquisition_id" in error.details()
    answer_as_aggregator(stack.redis, "acq-late", over=(0,))  # the aggregator decides after the caller left
    retry = stack.stub.Inspect(acquisition("acq-late"), timeout=5)
    assert retry.replayed and retry.decision == pb.REJECT
    assert stack.redis.xlen(SCORES_STREAM) == 1 and stack.inspector.calls == 1


def test_a_call_without_deadline_gets_the_configured_one(stack: Stack) -> None:
    own = open_stack(stack.redis_server, replace(make_config(stack.redis_server.url), deadline_ms=300))
    try:
        started = time.monotonic()
        error = rpc_error(own.stub.Inspect, acquisition("acq-no-deadline"))  # no timeout, nobody answers
        assert error.code() == grpc.StatusCode.DEADLINE_EXCEEDED
        assert 0.25 < time.monotonic() - started < 1.0
    finally:
        close_stack(own)


def _health(stack: Stack, service: str = "") -> int:
    stub = health_pb2_grpc.HealthStub(stack.channel)
    return stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=2).status


def _wait_health(stack: Stack, status: int, timeout_s: float = 5.0) -> None:
    deadline = time.monotonic() + timeout_s
    while _health(stack) != status:
        assert time.monotonic() < deadline, f"health never became {status}"
        time.sleep(0.05)


def test_redis_down_is_unavailable_then_service_recovers_with_it(stack: Stack) -> None:
    assert _health(stack) == _health(stack, "vialguard.v1.Inspection") == health_pb2.HealthCheckResponse.SERVING
    watcher = stack.stub.WatchVerdicts(pb.WatchRequest(), timeout=10)
    start_id = dict(watcher.initial_metadata())[START_ID_METADATA]
    stack.redis_server.stop()
    try:
        broken = rpc_error(lambda: next(watcher))
        assert broken.code() == grpc.StatusCode.UNAVAILABLE and f"after_id='{start_id}'" in broken.details()
        error = rpc_error(stack.stub.Inspect, acquisition("acq-noredis"), timeout=5)
        assert error.code() == grpc.StatusCode.UNAVAILABLE
        assert f"Redis at redis://127.0.0.1:{stack.redis_server.port}/0" in error.details()
        assert "nothing was queued" in error.details()
        _wait_health(stack, health_pb2.HealthCheckResponse.NOT_SERVING)
    finally:
        stack.redis_server.start()
    _wait_health(stack, health_pb2.HealthCheckResponse.SERVING)
    assert inspect(stack, acquisition("acq-noredis")).decision == pb.ACCEPT


def test_health_follows_the_inference_server(stack: Stack) -> None:
    stack.inspector.ready = False
    _wait_health(stack, health_pb2.HealthCheckResponse.NOT_SERVING)
    stack.inspector.ready = True
    _wait_health(stack, health_pb2.HealthCheckResponse.SERVING)


def test_reflection_is_off_by_default(stack: Stack) -> None:
    stub = reflection_pb2_grpc.ServerReflectionStub(stack.channel)
    replies = stub.ServerReflectionInfo(iter([reflection_pb2.ServerReflectionRequest(list_services="")]), timeout=5)
    assert rpc_error(list, replies).code() == grpc.StatusCode.UNIMPLEMENTED


def test_reflection_when_asked_lists_the_inspection_and_health_services(stack: Stack) -> None:
    own = open_stack(stack.redis_server, replace(make_config(stack.redis_server.url), reflection=True))
    try:
        stub = reflection_pb2_grpc.ServerReflectionStub(own.channel)
        replies = stub.ServerReflectionInfo(iter([reflection_pb2.ServerReflectionRequest(list_services="")]),
                                            timeout=5)
        names = {s.name for reply in replies for s in reply.list_services_response.service}
        assert {"vialguard.v1.Inspection", "grpc.health.v1.Health"} <= names
    finally:
        close_stack(own)


def test_watch_verdicts_streams_new_verdicts_and_resumes_after_an_id(stack: Stack) -> None:
    inspect(stack, acquisition("acq-before", product_id="P-watch"))  # decided before watching: not streamed
    watcher = stack.stub.WatchVerdicts(pb.WatchRequest(product_id="P-watch"), timeout=10)
    start_id = dict(watcher.initial_metadata())[START_ID_METADATA]
    inspect(stack, acquisition("acq-other", product_id="P-other"))
    inspect(stack, acquisition("acq-watched", product_id="P-watch"), over=(1,))
    first = next(watcher)
    watcher.cancel()
    assert (first.acquisition_id, first.decision, first.product_id) == ("acq-watched", pb.REJECT, "P-watch")
    assert first.stream_id and first.stream_id > start_id
    resumed = stack.stub.WatchVerdicts(pb.WatchRequest(after_id=start_id), timeout=10)
    assert [next(resumed).acquisition_id, next(resumed).acquisition_id] == ["acq-other", "acq-watched"]
    resumed.cancel()


def test_watch_streams_are_limited_so_the_camera_keeps_its_workers(stack: Stack) -> None:
    limit = stack.config.workers // 2
    watchers = [stack.stub.WatchVerdicts(pb.WatchRequest(), timeout=20) for _ in range(limit)]
    try:
        for watcher in watchers:
            assert START_ID_METADATA in dict(watcher.initial_metadata())  # each one is being served
        error = rpc_error(lambda: next(stack.stub.WatchVerdicts(pb.WatchRequest(), timeout=5)))
        assert error.code() == grpc.StatusCode.RESOURCE_EXHAUSTED and f"{limit} WatchVerdicts" in error.details()
        assert inspect(stack, acquisition("acq-while-watched")).decision == pb.ACCEPT
        watchers.pop().cancel()
        deadline = time.monotonic() + 5
        while True:  # the freed slot is reusable once the stream noticed its cancellation
            again = stack.stub.WatchVerdicts(pb.WatchRequest(), timeout=20)
            if START_ID_METADATA in dict(again.initial_metadata()):  # served, not refused
                break
            assert time.monotonic() < deadline, "a cancelled stream never gave its slot back"
            time.sleep(0.1)
        watchers.append(again)
    finally:
        for watcher in watchers:
            watcher.cancel()


def test_watch_verdicts_refuses_a_malformed_resume_id(stack: Stack) -> None:
    error = rpc_error(lambda: next(stack.stub.WatchVerdicts(pb.WatchRequest(after_id="yesterday"), timeout=5)))
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT and "after_id" in error.details()


def test_heatmaps_of_a_rejected_acquisition_are_kept_for_operators(stack: Stack) -> None:
    inspect(stack, acquisition("acq-rejected"), over=(5, 42))
    patches = stack.inspector.last_patches
    reply = stack.stub.GetHeatmaps(pb.HeatmapRequest(acquisition_id="acq-rejected"), timeout=5)
    got = [(h.frame, h.vial, h.region, h.region_id) for h in reply.heatmaps]
    assert got == [(0, 1, 1, "R1"), (15, 0, 2, "R2")]  # patch 5: slot 0 vial 1 R1; 42: slot 2 vial 0 R2
    for heatmap, index in zip(reply.heatmaps, (5, 42)):
        shown = cv2.imdecode(np.frombuffer(heatmap.png, np.uint8), cv2.IMREAD_UNCHANGED)
        expected = cv2.imdecode(np.frombuffer(to_png_gray(patches[index]), np.uint8), cv2.IMREAD_UNCHANGED)
        assert np.array_equal(shown, expected)
    assert 0 < stack.redis.ttl(heatmap_key("acq-rejected")) <= stack.config.heatmap_ttl_s
    inspect(stack, acquisition("acq-accepted"))
    error = rpc_error(stack.stub.GetHeatmaps, pb.HeatmapRequest(acquisition_id="acq-accepted"), timeout=5)
    assert error.code() == grpc.StatusCode.NOT_FOUND and "acq-accepted" in error.details()


@pytest.mark.parametrize("apart", [True, False], ids=["heatmap-graph", "older-version"])
def test_an_accepted_acquisition_moves_no_heatmap_and_a_reject_fetches_only_its_flagged_patches(
        stack: Stack, apart: bool) -> None:
    stack.inspector.apart = apart
    try:
        calls_before, asked_before = len(stack.inspector.heatmap_calls), len(stack.inspector.asked_heatmaps)
        assert inspect(stack, acquisition(f"acq-good-{apart}")).decision == pb.ACCEPT
        inspect(stack, acquisition(f"acq-bad-{apart}"), over=(5, 42))
        assert stack.inspector.asked_heatmaps[asked_before:] == [not apart, not apart]
        assert stack.inspector.last_patches is not None and stack.inspector.last_patches.dtype == np.uint8
        # fetched after the answer: GetHeatmaps waits for that fetch, so it is done once this returns
        reply = stack.stub.GetHeatmaps(pb.HeatmapRequest(acquisition_id=f"acq-bad-{apart}"), timeout=5)
        assert len(reply.heatmaps) == 2
        # with a heatmap graph: one call for the reject's two flagged patches, from the version that scored
        assert stack.inspector.heatmap_calls[calls_before:] == ([(2, 7)] if apart else [])
    finally:
        stack.inspector.apart = True


def test_heatmap_store_keeps_only_the_newest_acquisitions(stack: Stack) -> None:
    store = HeatmapStore(stack.redis, ttl_s=60, max_acquisitions=2)
    for n in range(3):
        store.put(f"acq-{n}", {n: b"png"})
    assert store.get("acq-0") == {} and store.get("acq-1") == {1: b"png"} and store.get("acq-2") == {2: b"png"}


def test_graceful_stop_finishes_the_call_in_flight_and_refuses_new_ones(stack: Stack) -> None:
    own = open_stack(stack.redis_server)
    try:
        in_flight = own.stub.Inspect.future(acquisition("acq-draining"), timeout=10)
        wait_for_scores(own.redis, "acq-draining")
        stopped = own.server.stop(5.0)
        late = rpc_error(own.stub.Inspect, acquisition("acq-too-late"), timeout=5)
        assert late.code() == grpc.StatusCode.UNAVAILABLE
        answer_as_aggregator(own.redis, "acq-draining")
        assert in_flight.result().acquisition_id == "acq-draining"
        assert stopped.wait(5)
    finally:
        close_stack(own)


def test_a_call_still_waiting_at_the_end_of_the_grace_period_is_told_to_retry_not_cancelled(stack: Stack) -> None:
    own = open_stack(stack.redis_server)
    try:
        in_flight = own.stub.Inspect.future(acquisition("acq-unanswered"), timeout=10)
        wait_for_scores(own.redis, "acq-unanswered")  # queued; no aggregator answers it
        started = time.monotonic()
        stopped = own.server.stop(1.0)
        error = in_flight.exception(5)
        assert error is not None and error.code() == grpc.StatusCode.UNAVAILABLE, error
        assert "shutting down" in error.details() and "retry with the same acquisition_id" in error.details()
        assert time.monotonic() - started < 1.0  # before gRPC would cancel it at the end of the grace
        assert stopped.wait(5)
    finally:
        close_stack(own)
