"""A reject's heatmaps, fetched after its verdict has been answered, and the wait for them.

Why after: fetching a reject's heatmaps from Triton, encoding them as PNG and
storing them in Redis took ~14 ms of the stack's p50 (and much of its p99)
while the camera waited, for images only people look at. The verdict needs
none of it, so Inspect answers first and hands the fetch to these workers.

Why bounded: the workers share the cores and the one Triton instance with the
line. One or two threads and a short queue; when the queue is full a fetch is
dropped with a warning (and counted), never queued without end and never
waited for by the camera. Heatmaps are a convenience for people, not a record.

Why ``expect`` before the fetch is known: the HMI learns of a reject from
WatchVerdicts, which can reach it before Inspect has even read the verdict.
Inspect marks the acquisition as pending *before its scores are queued*, so a
GetHeatmaps that arrives at any time after the verdict exists finds it pending
and waits (within its own deadline) instead of answering "none kept", which the
HMI would remember. An accepted (or failed) acquisition is settled at once.

Stopping: ``close`` refuses new fetches, lets those queued finish within a
drain time, then cancels what is left (logged, counted): no thread of ours is
left blocking the process's exit (the workers are daemons, each fetch bounded
by its own timeout).
"""
from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable

log = logging.getLogger(__name__)

Fetch = Callable[[], None]
# Why a reject's heatmaps were not kept: the queue was full, the preprocessor is stopping, the fetch
# was cancelled at stop (these three said by PendingHeatmaps), or the fetch failed (said by its caller).
DROPPED_QUEUE_FULL, DROPPED_STOPPING, DROPPED_AT_STOP = "queue_full", "stopping", "cancelled_at_stop"
FETCH_FAILED = "fetch_failed"
NOT_KEPT_REASONS = (DROPPED_QUEUE_FULL, DROPPED_STOPPING, DROPPED_AT_STOP, FETCH_FAILED)

_STOP = None  # a worker's sentinel


class PendingHeatmaps:
    """Background heatmap fetches by acquisition id, and a bounded wait for the one of an id.

    ``on_dropped(reason)`` is told of every fetch that does not run (the metrics
    count them); the fetch callables themselves are expected to catch and log
    their own failures, and anything they let through is logged here, never raised.
    """

    def __init__(self, workers: int = 1, capacity: int = 8,
                 on_dropped: Callable[[str], None] | None = None) -> None:
        if workers < 1 or capacity < 1:
            raise ValueError(f"PendingHeatmaps needs workers >= 1 and capacity >= 1, got {workers}, {capacity}")
        self._on_dropped = on_dropped or (lambda _reason: None)
        self._capacity = capacity
        # Unbounded as a queue, bounded by ``capacity`` in submit: a worker's stop sentinel never blocks.
        self._queue: queue.SimpleQueue[tuple[str, Fetch] | None] = queue.SimpleQueue()
        self._lock = threading.Condition()
        self._pending: dict[str, threading.Event] = {}  # expected or queued or running, by acquisition id
        self._queued = 0  # fetches waiting for a worker (at most capacity)
        self._busy = 0  # fetches waiting or running
        self._closed = False
        self._workers = [threading.Thread(target=self._work, name=f"heatmaps-{n}", daemon=True)
                         for n in range(workers)]
        for worker in self._workers:
            worker.start()

    # ------------------------------------------------------------ the Inspect side
    def expect(self, acquisition_id: str) -> None:
        """Mark ``acquisition_id`` as pending until ``submit`` ran its fetch or ``settle`` is called."""
        with self._lock:
            self._pending.setdefault(acquisition_id, threading.Event())

    def settle(self, acquisition_id: str) -> None:
        """No fetch will come for ``acquisition_id`` (accepted, failed, dropped): its waiters go on."""
        with self._lock:
            done = self._pending.pop(acquisition_id, None)
        if done is not None:
            done.set()

    def submit(self, acquisition_id: str, fetch: Fetch) -> bool:
        """Queue ``fetch`` for ``acquisition_id``, never blocking; False when it was dropped (and logged)."""
        with self._lock:
            if self._closed:
                reason = DROPPED_STOPPING
            elif self._queued >= self._capacity:
                reason = DROPPED_QUEUE_FULL
            else:
                self._pending.setdefault(acquisition_id, threading.Event())
                self._queued += 1
                self._busy += 1
                self._queue.put((acquisition_id, fetch))
                return True
        self.settle(acquisition_id)
        log.warning("heatmaps of rejected acquisition %s not kept: %s; the verdict stands", acquisition_id,
                    f"{self._capacity} fetches are already waiting (Triton or Redis slow?)"
                    if reason == DROPPED_QUEUE_FULL else "the preprocessor is stopping")
        self._on_dropped(reason)
        return False

    # ------------------------------------------------------------ the GetHeatmaps side
    def wait(self, acquisition_id: str, timeout_s: float) -> bool:
        """True once nothing is pending for ``acquisition_id`` (at once when nothing ever was);
        False when it is still pending after ``timeout_s``."""
        with self._lock:
            done = self._pending.get(acquisition_id)
        return done is None or done.wait(max(0.0, timeout_s))

    def pending(self) -> int:
        """Acquisitions expected, queued or being fetched (for tests and logs)."""
        with self._lock:
            return len(self._pending)

    # ------------------------------------------------------------ stopping
    def close(self, drain_s: float) -> int:
        """Refuse new fetches, let the queued ones finish within ``drain_s``, cancel the rest.

        Returns how many queued fetches were cancelled. Every pending id is settled,
        so no GetHeatmaps waits on a fetch that will not come. Idempotent.
        """
        deadline = time.monotonic() + max(0.0, drain_s)
        with self._lock:
            if self._closed:
                return 0
            self._closed = True
            self._lock.wait_for(lambda: self._busy == 0, timeout=max(0.0, drain_s))
        cancelled: list[str] = []
        while True:
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                break
            if item is not _STOP:
                cancelled.append(item[0])
                with self._lock:
                    self._queued -= 1
                    self._busy -= 1
        for acquisition_id in cancelled:
            self.settle(acquisition_id)
            self._on_dropped(DROPPED_AT_STOP)
        if cancelled:
            log.warning("stopping: the heatmaps of %d rejected acquisitions were not fetched (%s); their verdicts "
                        "stand", len(cancelled), ", ".join(cancelled[:10]) + (" ..." if len(cancelled) > 10 else ""))
        for _ in self._workers:
            self._queue.put(_STOP)
        for worker in self._workers:
            worker.join(max(0.0, deadline - time.monotonic()))
        with self._lock:
            left = list(self._pending)
        for acquisition_id in left:  # expected by a call that never came to submit, or still running
            self.settle(acquisition_id)
        return len(cancelled)

    def _work(self) -> None:
        while True:
            item = self._queue.get()
            if item is _STOP:
                return
            acquisition_id, fetch = item
            with self._lock:
                self._queued -= 1
            try:
                fetch()
            except Exception:  # noqa: BLE001 - best effort: a bug here must not kill the worker
                log.exception("heatmaps of rejected acquisition %s not kept: unexpected error", acquisition_id)
            finally:
                self.settle(acquisition_id)
                with self._lock:
                    self._busy -= 1
                    self._lock.notify_all()
