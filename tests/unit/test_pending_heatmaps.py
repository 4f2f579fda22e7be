"""PendingHeatmaps: a reject's heatmap fetch after its answer, bounded, waited for, drained at stop."""
from __future__ import annotations

import logging
import threading
import time

import pytest

from preprocessor.pending_heatmaps import (
    DROPPED_AT_STOP, DROPPED_QUEUE_FULL, DROPPED_STOPPING, PendingHeatmaps,
)

WAIT_S = 5.0  # generous: only a broken implementation waits this long


class Gate:
    """A fetch that blocks until the test opens the gate; ``started`` tells it is running."""

    def __init__(self) -> None:
        self.started, self.opened, self.ran = threading.Event(), threading.Event(), threading.Event()

    def __call__(self) -> None:
        self.started.set()
        assert self.opened.wait(WAIT_S)
        self.ran.set()


@pytest.fixture()
def dropped() -> list[str]:
    return []


@pytest.fixture()
def pending(dropped: list[str]):  # type: ignore[no-untyped-def]
    made = PendingHeatmaps(workers=1, capacity=1, on_dropped=dropped.append)
    yield made
    made.close(0.0)


def test_nothing_pending_is_answered_at_once_and_an_expected_id_waits_until_settled(pending: PendingHeatmaps) -> None:
    started = time.monotonic()
    assert pending.wait("never-seen", WAIT_S) and time.monotonic() - started < 1.0
    pending.expect("a")
    assert not pending.wait("a", 0.05)  # still pending when its own deadline passes
    threading.Timer(0.05, pending.settle, ("a",)).start()
    assert pending.wait("a", WAIT_S) and pending.pending() == 0


def test_a_submitted_fetch_runs_in_the_background_and_its_waiter_goes_on_when_it_ends(
        pending: PendingHeatmaps) -> None:
    gate = Gate()
    pending.expect("a")
    started = time.monotonic()
    assert pending.submit("a", gate)
    assert time.monotonic() - started < 1.0  # submit never runs the fetch itself
    assert gate.started.wait(WAIT_S) and not pending.wait("a", 0.05)
    gate.opened.set()
    assert pending.wait("a", WAIT_S) and gate.ran.is_set()


def test_a_full_queue_drops_the_fetch_with_a_warning_and_never_blocks(
        pending: PendingHeatmaps, dropped: list[str], caplog: pytest.LogCaptureFixture) -> None:
    running, queued = Gate(), Gate()
    assert pending.submit("running", running) and running.started.wait(WAIT_S)
    assert pending.submit("queued", queued)  # capacity 1: one may wait behind the one running
    with caplog.at_level(logging.WARNING, logger="preprocessor.pending_heatmaps"):
        started = time.monotonic()
        assert not pending.submit("too-many", Gate())
        assert time.monotonic() - started < 1.0
    assert dropped == [DROPPED_QUEUE_FULL]
    assert "too-many" in caplog.text and "not kept" in caplog.text
    assert pending.wait("too-many", 0.0)  # its reader hears "none kept" at once, not after a wait
    running.opened.set(), queued.opened.set()
    assert pending.wait("running", WAIT_S) and pending.wait("queued", WAIT_S) and queued.ran.is_set()


def test_a_fetch_that_raises_is_logged_and_the_worker_keeps_going(
        pending: PendingHeatmaps, caplog: pytest.LogCaptureFixture) -> None:
    def broken() -> None:
        raise RuntimeError("bug in a fetch")
    after = Gate()
    after.opened.set()
    with caplog.at_level(logging.ERROR, logger="preprocessor.pending_heatmaps"):
        assert pending.submit("broken", broken)
        assert pending.wait("broken", WAIT_S)
    assert "bug in a fetch" in caplog.text
    assert pending.submit("after", after) and pending.wait("after", WAIT_S) and after.ran.is_set()


def test_close_lets_the_queued_fetches_finish_within_the_drain_time() -> None:
    pending = PendingHeatmaps(workers=2, capacity=4)
    fetches = [Gate() for _ in range(4)]
    for n, fetch in enumerate(fetches):
        assert pending.submit(f"a{n}", fetch)
    for fetch in fetches:
        threading.Timer(0.05, fetch.opened.set).start()
    assert pending.close(WAIT_S) == 0
    assert all(fetch.ran.is_set() for fetch in fetches) and pending.pending() == 0


def test_close_cancels_what_the_drain_time_leaves_refuses_new_fetches_and_frees_every_waiter(
        pending: PendingHeatmaps, dropped: list[str], caplog: pytest.LogCaptureFixture) -> None:
    running, queued = Gate(), Gate()
    assert pending.submit("running", running) and running.started.wait(WAIT_S)
    assert pending.submit("queued", queued)
    pending.expect("never-submitted")  # an Inspect still waiting for its verdict when the server stopped
    with caplog.at_level(logging.WARNING, logger="preprocessor.pending_heatmaps"):
        started = time.monotonic()
        assert pending.close(0.05) == 1
        assert time.monotonic() - started < 1.0  # bounded by the drain time, not by the fetch running
    assert dropped == [DROPPED_AT_STOP] and "queued" in caplog.text
    assert all(pending.wait(a, 0.0) for a in ("running", "queued", "never-submitted"))
    assert not pending.submit("late", Gate()) and dropped[-1] == DROPPED_STOPPING
    assert pending.close(0.0) == 0  # idempotent
    running.opened.set()  # the fetch running at close ends on its own (bounded by its timeout)
    assert running.ran.wait(WAIT_S) and not queued.started.is_set()


def test_sizes_below_one_are_refused() -> None:
    with pytest.raises(ValueError):
        PendingHeatmaps(workers=0)
    with pytest.raises(ValueError):
        PendingHeatmaps(capacity=0)
