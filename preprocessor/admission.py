"""Admission control: how many acquisitions may be inferring at once, and what happens to the rest.

DESIGN invariant 8: no queue without a bound, no work for a caller that has gone.
Inference is the one expensive step (decoding and cutting are milliseconds),
so it is what is bounded: at most ``slots`` acquisitions of this preprocessor
are being decoded, cut or inferred at any time (the slot is taken before
decoding, so a shed acquisition costs nothing but its check). A call that
finds every slot taken waits only as long as it can still afford (its deadline less the inference time measured lately) and at most
``max_wait_s``; otherwise it is shed at once with RESOURCE_EXHAUSTED, before
anything is queued, instead of joining a queue it could only time out in.
Under overload the line then sees fast, explicit refusals for the excess and
normal latency for the rest, and a backlog never outlives the overload.
"""
from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

from preprocessor.deadline import Deadline

EWMA_WEIGHT = 0.2  # weight of the newest inference time in the running estimate


class Shed(Exception):
    """No inference slot could be had in time; the message says how loaded the preprocessor is."""


class Admission:
    def __init__(self, slots: int, max_wait_s: float) -> None:
        self.slots = slots
        self.max_wait_s = max_wait_s
        self._free = threading.BoundedSemaphore(slots)
        self._lock = threading.Lock()
        self._inference_s = 0.0  # running estimate; 0 until the first inference
        self.shed_count = 0

    def expected_inference_s(self) -> float:
        with self._lock:
            return self._inference_s

    def record(self, seconds: float) -> None:
        with self._lock:
            self._inference_s = seconds if self._inference_s == 0 else (
                (1 - EWMA_WEIGHT) * self._inference_s + EWMA_WEIGHT * seconds)

    @contextmanager
    def slot(self, deadline: Deadline) -> Iterator[None]:
        """Hold one inference slot for the block; Shed at once when none is free in time."""
        wait = min(self.max_wait_s, max(0.0, deadline.remaining() - self.expected_inference_s()))
        if not self._free.acquire(timeout=wait) if wait > 0 else not self._free.acquire(blocking=False):
            with self._lock:
                self.shed_count += 1
            raise Shed(
                f"the preprocessor is at its limit of {self.slots} acquisitions in inference (each holds a slot "
                f"about {self.expected_inference_s() * 1000:.0f} ms now); this one was refused at once and nothing "
                f"was queued: the line sends more than this preprocessor and its Triton can score. Retry with the "
                f"same acquisition_id after a pause, or add capacity (PREPROCESSOR_MAX_INFLIGHT, more replicas)")
        started = time.perf_counter()
        try:
            yield
        finally:
            self._free.release()
            self.record(time.perf_counter() - started)
