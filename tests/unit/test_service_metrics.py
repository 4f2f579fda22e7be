"""Metrics of the preprocessor (gRPC interceptor) and the aggregator, against the calls they see."""
from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import grpc
import pytest

from aggregator.metrics import AggregatorMetrics
from preprocessor.metrics import MetricsInterceptor, PreprocessorMetrics
from tests.unit.test_audit import verdict as verdict_message
from vialguard.messages import PatchVerdict
from vialguard.v1 import inspection_pb2 as pb
from vialguard.v1 import inspection_pb2_grpc as pb_grpc


class _Servicer(pb_grpc.InspectionServicer):
    """Answers by acquisition id: 'bad' is refused, 'replay' is replayed, anything else is a fresh REJECT."""

    def __init__(self) -> None:
        self.watching = threading.Event()

    def Inspect(self, request: pb.Acquisition, context: grpc.ServicerContext) -> pb.Verdict:
        if request.acquisition_id == "bad":
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, "malformed")
        return pb.Verdict(acquisition_id=request.acquisition_id, decision=pb.REJECT, model_version=4,
                          replayed=request.acquisition_id == "replay",
                          timings=pb.StageTimings(decode_ms=2, patching_ms=3, inference_ms=40, queue_ms=5,
                                                  aggregation_ms=1, total_ms=52))

    def WatchVerdicts(self, request: pb.WatchRequest, context: grpc.ServicerContext):  # type: ignore[no-untyped-def]
        self.watching.set()
        yield pb.Verdict(acquisition_id="w")
        while context.is_active():
            threading.Event().wait(0.05)


@pytest.fixture()
def served() -> tuple[pb_grpc.InspectionStub, PreprocessorMetrics, _Servicer]:
    metrics = PreprocessorMetrics()
    servicer = _Servicer()
    server = grpc.server(ThreadPoolExecutor(4), interceptors=[MetricsInterceptor(metrics)])
    pb_grpc.add_InspectionServicer_to_server(servicer, server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    channel = grpc.insecure_channel(f"127.0.0.1:{port}")
    yield pb_grpc.InspectionStub(channel), metrics, servicer
    channel.close()
    server.stop(None)


def _value(metrics: PreprocessorMetrics | AggregatorMetrics, name: str, **labels: str) -> float:
    value = metrics.registry.get_sample_value(name, labels)
    return 0.0 if value is None else value


def test_calls_are_counted_by_method_and_code_and_fresh_verdicts_feed_the_stage_histograms(served) -> None:
    stub, metrics, _ = served
    for acquisition_id in ("a", "b", "replay"):
        stub.Inspect(pb.Acquisition(acquisition_id=acquisition_id), timeout=5)
    with pytest.raises(grpc.RpcError):
        stub.Inspect(pb.Acquisition(acquisition_id="bad"), timeout=5)
    assert _value(metrics, "vialguard_preprocessor_grpc_requests_total", method="Inspect", code="OK") == 3
    assert _value(metrics, "vialguard_preprocessor_grpc_requests_total", method="Inspect",
                  code="INVALID_ARGUMENT") == 1
    assert _value(metrics, "vialguard_preprocessor_verdicts_total", decision="REJECT", model_version="4",
                  replayed="false") == 2
    assert _value(metrics, "vialguard_preprocessor_verdicts_total", decision="REJECT", model_version="4",
                  replayed="true") == 1
    for stage in ("decode", "patching", "inference", "queue", "aggregation"):
        assert _value(metrics, "vialguard_preprocessor_stage_seconds_count", stage=stage) == 2
    assert _value(metrics, "vialguard_preprocessor_stage_seconds_sum", stage="inference") == pytest.approx(0.08)
    assert _value(metrics, "vialguard_preprocessor_end_to_end_seconds_sum") == pytest.approx(0.104)
    assert _value(metrics, "vialguard_preprocessor_grpc_in_flight_requests", method="Inspect") == 0


def test_an_open_stream_is_in_flight_until_the_client_goes(served) -> None:
    stub, metrics, servicer = served
    stream = stub.WatchVerdicts(pb.WatchRequest())
    next(stream)
    assert servicer.watching.wait(5)
    assert _value(metrics, "vialguard_preprocessor_grpc_in_flight_requests", method="WatchVerdicts") == 1
    stream.cancel()
    for _ in range(100):
        if _value(metrics, "vialguard_preprocessor_grpc_in_flight_requests", method="WatchVerdicts") == 0:
            break
        threading.Event().wait(0.05)
    assert _value(metrics, "vialguard_preprocessor_grpc_in_flight_requests", method="WatchVerdicts") == 0
    assert _value(metrics, "vialguard_preprocessor_grpc_requests_total", method="WatchVerdicts",
                  code="CANCELLED") == 1


def test_aggregator_counts_verdicts_by_decision_and_version_and_over_patches_by_region() -> None:
    metrics = AggregatorMetrics()
    rejected = verdict_message("A1", "REJECT")
    rejected.patches = [PatchVerdict(0, 0, 0, 0.5, 0.2, True), PatchVerdict(1, 2, 3, 0.5, 0.2, True),
                        PatchVerdict(2, 2, 3, 0.5, 0.2, True), PatchVerdict(0, 1, 1, 0.1, 0.2, False)]
    rejected.timings_ms = {"queue_wait_ms": 12.0, "aggregator_decide_ms": 0.4}
    metrics.observe_verdict(rejected)
    metrics.observe_verdict(verdict_message("A2", "ACCEPT"))
    metrics.observe_entry("decided", 0.003)
    metrics.observe_entry("dead-lettered", 0.001)
    assert _value(metrics, "vialguard_aggregator_verdicts_total", decision="REJECT", model_version="3") == 1
    assert _value(metrics, "vialguard_aggregator_verdicts_total", decision="ACCEPT", model_version="3") == 1
    over = {r: _value(metrics, "vialguard_aggregator_over_threshold_patches_total", region=r)
            for r in ("R0", "R1", "R2", "R3")}
    assert over == {"R0": 1, "R1": 0, "R2": 0, "R3": 2}
    assert _value(metrics, "vialguard_aggregator_queue_wait_seconds_sum") == pytest.approx(0.012)
    assert _value(metrics, "vialguard_aggregator_entries_total", outcome="dead-lettered") == 1
    assert _value(metrics, "vialguard_aggregator_handling_seconds_count") == 1


def test_rejects_whose_heatmaps_were_not_kept_are_counted_by_reason_from_the_first_scrape() -> None:
    metrics = PreprocessorMetrics()
    for reason in ("queue_full", "stopping", "cancelled_at_stop", "fetch_failed"):
        assert metrics.registry.get_sample_value("vialguard_preprocessor_heatmaps_not_kept_total",
                                                 {"reason": reason}) == 0
    metrics.heatmaps_not_kept.labels("queue_full").inc()
    assert _value(metrics, "vialguard_preprocessor_heatmaps_not_kept_total", reason="queue_full") == 1
