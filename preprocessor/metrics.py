"""Prometheus metrics of the preprocessor, recorded by a gRPC server interceptor.

The interceptor sits around every handler, so the servicer (the data path) carries
no metrics code: it counts calls by method and final gRPC status code, keeps the
number in flight, and reads each Inspect verdict's own stage timings (the ones the
camera receives) into histograms. A replayed verdict repeats an earlier call's
timings, so only fresh verdicts feed the stage histograms.
"""
from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any

import grpc
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from preprocessor.pending_heatmaps import NOT_KEPT_REASONS
from vialguard.metrics import LATENCY_BUCKETS_S
from vialguard.v1 import inspection_pb2 as pb

STAGES = ("decode", "patching", "inference", "queue", "aggregation")


class PreprocessorMetrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        r = self.registry
        self.requests = Counter("vialguard_preprocessor_grpc_requests", "gRPC calls handled, by method and final "
                                "status code (errors are code != OK)", ["method", "code"], registry=r)
        self.in_flight = Gauge("vialguard_preprocessor_grpc_in_flight_requests",
                               "gRPC calls being handled now (WatchVerdicts: open streams)", ["method"], registry=r)
        self.handling = Histogram("vialguard_preprocessor_grpc_handling_seconds", "Time to answer a unary call",
                                  ["method"], buckets=LATENCY_BUCKETS_S, registry=r)
        self.stage = Histogram("vialguard_preprocessor_stage_seconds",
                               "Time of each stage of a fresh Inspect, as reported in its verdict", ["stage"],
                               buckets=LATENCY_BUCKETS_S, registry=r)
        self.end_to_end = Histogram("vialguard_preprocessor_end_to_end_seconds",
                                    "Inspect request received -> verdict ready (fresh verdicts)",
                                    buckets=LATENCY_BUCKETS_S, registry=r)
        self.verdicts = Counter("vialguard_preprocessor_verdicts", "Verdicts returned to the camera",
                                ["decision", "model_version", "replayed"], registry=r)
        # Told by the servicer (a hook, not metrics code in the data path): a reject's heatmaps are
        # fetched after its answer, best effort; these are the ones that were not kept.
        self.heatmaps_not_kept = Counter("vialguard_preprocessor_heatmaps_not_kept",
                                         "Rejected acquisitions whose heatmaps were not kept, by reason (queue_full, "
                                         "stopping, cancelled_at_stop, fetch_failed); their verdicts stand",
                                         ["reason"], registry=r)
        for reason in NOT_KEPT_REASONS:
            self.heatmaps_not_kept.labels(reason)
        for stage in STAGES:
            self.stage.labels(stage)  # present from the first scrape, before any traffic

    def observe_verdict(self, verdict: pb.Verdict) -> None:
        replayed = "true" if verdict.replayed else "false"
        self.verdicts.labels(pb.Decision.Name(verdict.decision), str(verdict.model_version), replayed).inc()
        if verdict.replayed:
            return
        t = verdict.timings
        for stage, ms in zip(STAGES, (t.decode_ms, t.patching_ms, t.inference_ms, t.queue_ms, t.aggregation_ms)):
            self.stage.labels(stage).observe(ms / 1000.0)
        self.end_to_end.observe(t.total_ms / 1000.0)


def _code_of(context: grpc.ServicerContext, failed: bool) -> str:
    code = context.code() if hasattr(context, "code") else None
    if code is None:
        return "UNKNOWN" if failed else "OK"
    return code.name if isinstance(code, grpc.StatusCode) else str(code)


class MetricsInterceptor(grpc.ServerInterceptor):
    """Counts, times and tracks in-flight calls of every method; observes Inspect's verdicts."""

    def __init__(self, metrics: PreprocessorMetrics) -> None:
        self._m = metrics

    def intercept_service(self, continuation: Callable[[Any], Any], details: grpc.HandlerCallDetails) -> Any:
        handler = continuation(details)
        if handler is None:
            return None
        method = details.method.rsplit("/", 1)[-1]
        if handler.unary_unary is not None:
            return handler._replace(unary_unary=self._unary(method, handler.unary_unary))
        if handler.unary_stream is not None:
            return handler._replace(unary_stream=self._stream(method, handler.unary_stream))
        return handler

    def _unary(self, method: str, behaviour: Callable[[Any, grpc.ServicerContext], Any]) -> Callable[..., Any]:
        m = self._m

        def wrapped(request: Any, context: grpc.ServicerContext) -> Any:
            started = time.perf_counter()
            m.in_flight.labels(method).inc()
            failed = True
            try:
                reply = behaviour(request, context)
                failed = False
                if isinstance(reply, pb.Verdict):
                    m.observe_verdict(reply)
                return reply
            finally:
                m.requests.labels(method, _code_of(context, failed)).inc()
                m.handling.labels(method).observe(time.perf_counter() - started)
                m.in_flight.labels(method).dec()
        return wrapped

    def _stream(self, method: str, behaviour: Callable[[Any, grpc.ServicerContext], Iterator[Any]]) -> Callable[..., Any]:
        m = self._m

        def wrapped(request: Any, context: grpc.ServicerContext) -> Iterator[Any]:
            m.in_flight.labels(method).inc()
            failed = True
            try:
                yield from behaviour(request, context)
                failed = False
            finally:
                code = _code_of(context, failed)
                if code in ("OK", "UNKNOWN") and not context.is_active():
                    code = "CANCELLED"  # the client went away (a screen closed): not an error of ours
                m.requests.labels(method, code).inc()
                m.in_flight.labels(method).dec()
        return wrapped
