"""Everything one HMI process holds, built once at start and shared by its routes."""
from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import grpc

from hmi.audit_reader import AuditReader, AuditUnavailable
from hmi.config import HmiConfig
from hmi.feed import VerdictFeed
from hmi.heatmaps import HeatmapSource
from hmi.labels import KitLabels
from hmi.metrics import HmiMetrics
from hmi.store import LiveStore
from hmi.views import rates, strip_grid
from vialguard.recipe import Recipe, load_recipe

AUDIT_CHECK_MS = 5_000


@dataclass
class Hmi:
    config: HmiConfig
    recipe: Recipe
    store: LiveStore
    feed: VerdictFeed
    heatmaps: HeatmapSource
    audit: AuditReader
    labels: KitLabels
    metrics: HmiMetrics
    channel: grpc.Channel
    _audit_checked: tuple[int, dict[str, Any]] = (0, {"ok": True, "problem": ""})

    @classmethod
    def build(cls, config: HmiConfig) -> "Hmi":
        metrics = HmiMetrics()
        store = LiveStore(config.keep_verdicts)
        # One channel for the stream and the lookups; gRPC reconnects it by itself.
        channel = grpc.insecure_channel(config.preprocessor, options=[
            ("grpc.max_receive_message_length", 64 * 1024 * 1024)])
        feed = VerdictFeed(channel, config.preprocessor, store, metrics, config.history_s, config.reconnect_max_s)
        return cls(config, load_recipe(config.recipe), store, feed, HeatmapSource(channel, metrics),
                   AuditReader(config.audit_db, config.audit_key_file, config.audit_anchor),
                   KitLabels(config.labels), metrics, channel)

    def start(self) -> None:
        self.feed.start()

    def stop(self) -> None:
        self.feed.stop()
        self.channel.close()

    def _audit_state(self, now_ms: int) -> dict[str, Any]:
        """Whether the audit store reads, checked at most every AUDIT_CHECK_MS (every page asks every second)."""
        checked_ms, state = self._audit_checked
        if now_ms - checked_ms >= AUDIT_CHECK_MS:
            try:
                self.audit.recent(1)
                state = {"ok": True, "problem": ""}
            except AuditUnavailable as exc:
                state = {"ok": False, "problem": str(exc)}
            self._audit_checked = (now_ms, state)
        return state

    def summary(self) -> dict[str, Any]:
        """What every page's status line and the live page's header show."""
        now = int(time.time() * 1000)
        status = self.store.status
        received, by_decision = self.store.counts()
        recent = self.store.recent()
        r = rates(recent, now, self.config.window_s)
        audit = self._audit_state(now)
        return {
            "now_unix_ms": now,
            "stack": {"connected": status.connected, "reason": status.reason, "since_unix_ms": status.since_unix_ms,
                      "preprocessor": self.config.preprocessor, "last_stream_id": status.last_stream_id},
            "audit": audit,
            "received": received,
            "accepts": by_decision.get("ACCEPT", 0),
            "rejects": by_decision.get("REJECT", 0),
            "rates": {"window_s": r.window_s, "verdicts": r.verdicts, "rejects": r.rejects,
                      "reject_rate": r.reject_rate, "per_minute": r.per_minute},
            "model_version": recent[0].model_version if recent else None,
            "grid": strip_grid(recent[0]) if recent else None,
        }
