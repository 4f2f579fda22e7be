"""Prometheus metrics of the aggregator: verdicts, over-threshold patches, stage times, the queue.

Counts and times are recorded by two hooks in the consumer loop (one per entry
handled, one per verdict decided); the queue's state — stream lengths, the
consumer group's pending entries and lag — is read from Redis at scrape time by
a collector with its own short-timeout client, so a scrape never waits on, or
slows, the loop that judges acquisitions.
"""
from __future__ import annotations

import logging
from collections.abc import Iterator

import redis
from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from aggregator.publish import DEAD_LETTER_STREAM
from vialguard.messages import CONSUMER_GROUP, SCORES_STREAM, VERDICTS_STREAM, VerdictMessage
from vialguard.metrics import LATENCY_BUCKETS_S
from vialguard.recipe import REGION_IDS

log = logging.getLogger(__name__)

OUTCOMES = ("decided", "republished", "dead-lettered", "vanished")


class AggregatorMetrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        r = self.registry
        self.entries = Counter("vialguard_aggregator_entries", "Scores entries handled, by what happened to them",
                               ["outcome"], registry=r)
        self.verdicts = Counter("vialguard_aggregator_verdicts", "Verdicts decided (each acquisition once)",
                                ["decision", "model_version"], registry=r)
        self.over = Counter("vialguard_aggregator_over_threshold_patches",
                            "Patches scored above their region's threshold, in decided verdicts", ["region"],
                            registry=r)
        self.queue_wait = Histogram("vialguard_aggregator_queue_wait_seconds",
                                    "Scores queued by the preprocessor -> taken up by the aggregator",
                                    buckets=LATENCY_BUCKETS_S, registry=r)
        self.decision = Histogram("vialguard_aggregator_decision_seconds",
                                  "Thresholds, strip rule and run policy of one acquisition",
                                  buckets=LATENCY_BUCKETS_S, registry=r)
        self.handling = Histogram("vialguard_aggregator_handling_seconds",
                                  "One scores entry from read to published and acknowledged (audit write included)",
                                  buckets=LATENCY_BUCKETS_S, registry=r)
        for outcome in OUTCOMES:
            self.entries.labels(outcome)
        for region in REGION_IDS:
            self.over.labels(region)

    def observe_entry(self, outcome: str, seconds: float) -> None:
        self.entries.labels(outcome).inc()
        if outcome in ("decided", "republished"):
            self.handling.observe(seconds)

    def observe_verdict(self, verdict: VerdictMessage) -> None:
        """A verdict this aggregator decided (not a republished one)."""
        self.verdicts.labels(verdict.decision, str(verdict.model_version)).inc()
        for p in verdict.patches:
            if p.over:
                self.over.labels(REGION_IDS[p.region] if 0 <= p.region < len(REGION_IDS) else f"R{p.region}").inc()
        timings = verdict.timings_ms
        if "queue_wait_ms" in timings:
            self.queue_wait.observe(timings["queue_wait_ms"] / 1000.0)
        if "aggregator_decide_ms" in timings:
            self.decision.observe(timings["aggregator_decide_ms"] / 1000.0)


class RedisQueueCollector(Collector):
    """Stream lengths and the consumer group's pending entries and lag, read at each scrape."""

    def __init__(self, redis_url: str, timeout_s: float = 1.0) -> None:
        self._client = redis.Redis.from_url(redis_url, socket_timeout=timeout_s, socket_connect_timeout=timeout_s,
                                            protocol=2)

    def collect(self) -> Iterator[GaugeMetricFamily]:
        up = GaugeMetricFamily("vialguard_redis_up", "1 when Redis answered this scrape")
        length = GaugeMetricFamily("vialguard_redis_stream_length", "Entries in a stream (XLEN)", labels=["stream"])
        pending = GaugeMetricFamily("vialguard_redis_consumer_group_pending",
                                    "Entries read by the group and not yet acknowledged", labels=["stream", "group"])
        lag = GaugeMetricFamily("vialguard_redis_consumer_group_lag",
                                "Entries in the stream not yet delivered to the group", labels=["stream", "group"])
        consumers = GaugeMetricFamily("vialguard_redis_consumer_group_consumers", "Consumers in the group",
                                      labels=["stream", "group"])
        try:
            pipe = self._client.pipeline(transaction=False)
            for stream in (SCORES_STREAM, VERDICTS_STREAM, DEAD_LETTER_STREAM):
                pipe.xlen(stream)
            lengths = pipe.execute()
            groups = self._client.xinfo_groups(SCORES_STREAM) if lengths[0] or self._client.exists(SCORES_STREAM) else []
        except redis.RedisError as exc:
            log.debug("metrics scrape: Redis not answering: %s", exc)
            up.add_metric([], 0)
            yield up
            return
        up.add_metric([], 1)
        for stream, n in zip((SCORES_STREAM, VERDICTS_STREAM, DEAD_LETTER_STREAM), lengths):
            length.add_metric([stream], n)
        for group in groups:
            name = _text(group.get("name", group.get(b"name", b"")))
            if name != CONSUMER_GROUP:
                continue
            pending.add_metric([SCORES_STREAM, name], float(group.get("pending", 0) or 0))
            consumers.add_metric([SCORES_STREAM, name], float(group.get("consumers", 0) or 0))
            if group.get("lag") is not None:  # Redis >= 7; None when Redis cannot tell (after trimming)
                lag.add_metric([SCORES_STREAM, name], float(group["lag"]))
        yield from (up, length, pending, lag, consumers)


def _text(value: object) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
