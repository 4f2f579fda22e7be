"""Prometheus metrics of the HMI: what it received and how late, and whether it is connected."""
from __future__ import annotations

import time

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from hmi.verdicts import VerdictView
from vialguard.metrics import LATENCY_BUCKETS_S


class HmiMetrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        r = self.registry
        self.verdicts = Counter("vialguard_hmi_verdicts_received", "Verdicts received from WatchVerdicts",
                                ["decision", "model_version"], registry=r)
        self.delivery = Histogram("vialguard_hmi_verdict_delivery_seconds",
                                  "Verdict decided (aggregator clock) -> received by the HMI",
                                  buckets=LATENCY_BUCKETS_S, registry=r)
        self.watch_connected = Gauge("vialguard_hmi_watch_connected", "1 while WatchVerdicts is followed",
                                     registry=r)
        self.watch_connections = Counter("vialguard_hmi_watch_connections", "WatchVerdicts streams opened",
                                         registry=r)
        self.watch_errors = Counter("vialguard_hmi_watch_errors", "WatchVerdicts streams lost, by gRPC code",
                                    ["code"], registry=r)
        self.heatmap_requests = Counter("vialguard_hmi_heatmap_requests", "GetHeatmaps calls, by gRPC code",
                                        ["code"], registry=r)
        self.event_clients = Gauge("vialguard_hmi_event_stream_clients", "Pages following the live event stream",
                                   registry=r)

    def observe_verdict(self, verdict: VerdictView, live: bool = True, now_unix_ms: int | None = None) -> None:
        self.verdicts.labels(verdict.decision, str(verdict.model_version)).inc()
        if live and verdict.decided_at_unix_ms:
            now = int(time.time() * 1000) if now_unix_ms is None else now_unix_ms
            self.delivery.observe(max(0, now - verdict.decided_at_unix_ms) / 1000.0)
