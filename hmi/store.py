"""What the HMI has received, held in memory for its pages, and who is waiting for more.

Written by the one feed thread, read by the web server's event loop: a lock
guards it, and each waiting page's asyncio.Event is set through its own loop.
Bounded: the newest ``capacity`` verdicts are kept (older ones are still in the
audit store), and each acquisition is kept once, so a reconnection that replays
an entry already shown does not show it twice.
"""
from __future__ import annotations

import asyncio
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass, replace

from hmi.verdicts import VerdictView


@dataclass(frozen=True)
class FeedStatus:
    connected: bool = False
    since_unix_ms: int = 0           # when it last changed
    reason: str = "not connected yet"
    last_stream_id: str = ""


def _stream_key(stream_id: str) -> tuple[int, int]:
    ms, _, seq = stream_id.partition("-")
    return int(ms or 0), int(seq or 0)


class LiveStore:
    def __init__(self, capacity: int) -> None:
        self._capacity = capacity
        self._lock = threading.Lock()
        self._verdicts: OrderedDict[str, VerdictView] = OrderedDict()   # acquisition_id -> verdict, oldest first
        self._products: OrderedDict[str, VerdictView] = OrderedDict()   # product_id -> its latest verdict
        self._status = FeedStatus(since_unix_ms=int(time.time() * 1000))
        self._received = 0
        self._by_decision: dict[str, int] = {}
        self._waiters: list[tuple[asyncio.AbstractEventLoop, asyncio.Event]] = []

    # ---- written by the feed -----------------------------------------------------------------
    def add(self, verdict: VerdictView) -> bool:
        """Keep one verdict; False when that acquisition (or an older stream entry) was seen already."""
        with self._lock:
            last = self._status.last_stream_id
            if verdict.acquisition_id in self._verdicts or (
                    verdict.stream_id and last and _stream_key(verdict.stream_id) <= _stream_key(last)):
                return False
            self._verdicts[verdict.acquisition_id] = verdict
            while len(self._verdicts) > self._capacity:
                self._verdicts.popitem(last=False)
            self._products[verdict.product_id] = verdict
            self._products.move_to_end(verdict.product_id)
            while len(self._products) > self._capacity:
                self._products.popitem(last=False)
            self._received += 1
            self._by_decision[verdict.decision] = self._by_decision.get(verdict.decision, 0) + 1
            if verdict.stream_id:
                self._status = replace(self._status, last_stream_id=verdict.stream_id)
        self._wake()
        return True

    def set_status(self, connected: bool, reason: str) -> None:
        with self._lock:
            s = self._status
            if s.connected == connected and s.reason == reason:
                return
            self._status = replace(s, connected=connected, reason=reason, since_unix_ms=int(time.time() * 1000))
        self._wake()

    # ---- read by the pages --------------------------------------------------------------------
    @property
    def status(self) -> FeedStatus:
        with self._lock:
            return self._status

    def counts(self) -> tuple[int, dict[str, int]]:
        """Verdicts received since the HMI started: in all, and by decision."""
        with self._lock:
            return self._received, dict(self._by_decision)

    def recent(self, n: int | None = None) -> list[VerdictView]:
        """The newest ``n`` verdicts, newest first."""
        with self._lock:
            items = list(self._verdicts.values())
        items.reverse()
        return items if n is None else items[:n]

    def after(self, stream_id: str) -> list[VerdictView]:
        """Verdicts that came after ``stream_id`` (for a page resuming its event stream), oldest first."""
        key = _stream_key(stream_id)
        with self._lock:
            return [v for v in self._verdicts.values() if v.stream_id and _stream_key(v.stream_id) > key]

    def get(self, acquisition_id: str) -> VerdictView | None:
        with self._lock:
            return self._verdicts.get(acquisition_id)

    def products(self) -> list[VerdictView]:
        """Each product's latest verdict (its run-policy state), in the order products were last seen."""
        with self._lock:
            return list(self._products.values())

    # ---- waiting pages ------------------------------------------------------------------------
    def subscribe(self) -> asyncio.Event:
        """An event set whenever something changes; call from the event loop, unsubscribe when done."""
        event = asyncio.Event()
        with self._lock:
            self._waiters.append((asyncio.get_running_loop(), event))
        return event

    def unsubscribe(self, event: asyncio.Event) -> None:
        with self._lock:
            self._waiters = [(loop, e) for loop, e in self._waiters if e is not event]

    def _wake(self) -> None:
        with self._lock:
            waiters = list(self._waiters)
        for loop, event in waiters:
            try:
                loop.call_soon_threadsafe(event.set)
            except RuntimeError:  # that loop has closed
                self.unsubscribe(event)
