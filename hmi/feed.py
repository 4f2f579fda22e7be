"""Follows WatchVerdicts into the LiveStore, and comes back after every disconnection.

The first connection asks for the last ``history_s`` of the verdicts stream (a
stream id is its time in ms, so ``<now - history>-0`` is a valid after_id), so a
screen opened mid-shift shows the recent past. Every later connection resumes
with the stream_id of the last verdict received: nothing missed, and the store
drops anything seen twice. While the preprocessor (or Redis behind it) is down,
the store's status says so, with the reason, and the feed retries with backoff.
"""
from __future__ import annotations

import logging
import threading
import time
from typing import Any

import grpc

from hmi.metrics import HmiMetrics
from hmi.store import LiveStore
from hmi.verdicts import from_proto
from vialguard.v1 import inspection_pb2 as pb
from vialguard.v1 import inspection_pb2_grpc as pb_grpc

log = logging.getLogger(__name__)


def history_start_id(history_s: int, now_unix_ms: int | None = None) -> str:
    now = int(time.time() * 1000) if now_unix_ms is None else now_unix_ms
    return f"{max(0, now - history_s * 1000)}-0"


class VerdictFeed:
    def __init__(self, channel: grpc.Channel, target: str, store: LiveStore, metrics: HmiMetrics,
                 history_s: int, reconnect_max_s: float) -> None:
        self._stub = pb_grpc.InspectionStub(channel)
        self._target = target
        self._store = store
        self._metrics = metrics
        self._after = history_start_id(history_s)
        self._reconnect_max_s = reconnect_max_s
        self._stopping = threading.Event()
        self._call: Any = None  # the open WatchVerdicts call, cancelled by stop()
        self._thread = threading.Thread(target=self._run, name="verdict-feed", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stopping.set()
        call = self._call
        if call is not None:
            call.cancel()
        self._thread.join(timeout=5)

    def _run(self) -> None:
        backoff = 0.2
        while not self._stopping.is_set():
            try:
                self._follow()
                backoff = 0.2
            except grpc.RpcError as exc:
                if self._stopping.is_set():
                    break
                code = exc.code() if hasattr(exc, "code") else None
                reason = (f"preprocessor at {self._target}: {code.name if code else 'error'}"
                          f" ({exc.details() if hasattr(exc, 'details') else exc})")
                if self._store.status.connected:
                    log.warning("WatchVerdicts lost: %s; resuming after %s", reason, self._after)
                self._metrics.watch_errors.labels(code.name if code else "UNKNOWN").inc()
                self._store.set_status(False, reason)
                self._metrics.watch_connected.set(0)
            self._stopping.wait(backoff)
            backoff = min(backoff * 2, self._reconnect_max_s)

    def _follow(self) -> None:
        call = self._stub.WatchVerdicts(pb.WatchRequest(after_id=self._after))
        self._call = call
        call.initial_metadata()  # the preprocessor sends it once it is following the stream
        self._store.set_status(True, "following WatchVerdicts")
        self._metrics.watch_connected.set(1)
        self._metrics.watch_connections.inc()
        log.info("following WatchVerdicts on %s after %s", self._target, self._after)
        connected_ms = int(time.time() * 1000)
        for verdict in call:
            view = from_proto(verdict)
            if self._store.add(view):
                # Delivery lag only of verdicts decided while connected: a replayed backlog is not lag.
                self._metrics.observe_verdict(view, live=view.decided_at_unix_ms >= connected_ms)
            if verdict.stream_id:
                self._after = verdict.stream_id
        if not self._stopping.is_set():  # the server ended the stream without an error
            raise _Ended()


class _Ended(grpc.RpcError):
    def code(self) -> grpc.StatusCode:
        return grpc.StatusCode.UNAVAILABLE

    def details(self) -> str:
        return "the stream ended"
