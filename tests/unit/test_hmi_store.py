"""The HMI's memory: each acquisition once, in stream order, bounded; resuming misses nothing."""
from __future__ import annotations

import asyncio

from hmi.feed import history_start_id
from hmi.store import LiveStore
from tests.unit.hmi_support import verdict


def test_an_acquisition_or_an_older_stream_entry_is_kept_once() -> None:
    store = LiveStore(capacity=10)
    assert store.add(verdict("A", stream_id="100-0"))
    assert not store.add(verdict("A", stream_id="101-0"))   # same acquisition again
    assert not store.add(verdict("B", stream_id="99-5"))    # an entry before the last one: a replay
    assert store.add(verdict("C", stream_id="100-1"))
    assert [v.acquisition_id for v in store.recent()] == ["C", "A"]
    assert store.counts() == (2, {"ACCEPT": 2})
    assert store.status.last_stream_id == "100-1"


def test_after_gives_exactly_what_a_resuming_page_has_not_seen() -> None:
    store = LiveStore(capacity=10)
    for i in range(5):
        store.add(verdict(f"A{i}", stream_id=f"{1000 + i}-0"))
    assert [v.acquisition_id for v in store.after("1002-0")] == ["A3", "A4"]
    assert [v.acquisition_id for v in store.after("0-0")] == ["A0", "A1", "A2", "A3", "A4"]


def test_memory_is_bounded_and_products_keep_their_latest_state() -> None:
    store = LiveStore(capacity=3)
    for i in range(6):
        store.add(verdict(f"P{i % 2}-R{i}", product_id=f"P{i % 2}", run_index=i, stream_id=f"{i + 1}-0",
                          accepts=i + 1))
    assert [v.acquisition_id for v in store.recent()] == ["P1-R5", "P0-R4", "P1-R3"]
    assert store.counts()[0] == 6  # counted since start, even when no longer held
    assert {v.product_id: v.accepts for v in store.products()} == {"P0": 5, "P1": 6}


def test_a_waiting_page_is_woken_by_a_verdict_from_another_thread() -> None:
    store = LiveStore(capacity=3)

    async def wait() -> bool:
        event = store.subscribe()
        loop = asyncio.get_running_loop()
        loop.run_in_executor(None, store.add, verdict("X", stream_id="5-0"))
        await asyncio.wait_for(event.wait(), timeout=5)
        store.unsubscribe(event)
        return True

    assert asyncio.run(wait())


def test_status_changes_are_recorded_with_their_reason() -> None:
    store = LiveStore(capacity=3)
    assert not store.status.connected
    store.set_status(False, "preprocessor at x: UNAVAILABLE (connection refused)")
    assert "UNAVAILABLE" in store.status.reason
    store.set_status(True, "following WatchVerdicts")
    assert store.status.connected


def test_the_first_connection_replays_the_history_window() -> None:
    assert history_start_id(900, now_unix_ms=2_000_000) == "1100000-0"
    assert history_start_id(900, now_unix_ms=1_000) == "0-0"
