"""The live event stream (server-sent events) that keeps every page current without reloading.

Events: ``verdict`` (one live-table row, its id the verdict's stream_id) and
``summary`` (stack status, counts, rates, the current strip's grid) at least once a
second, so a page shows within a second that the stack behind it went down. A
browser that loses the stream reconnects by itself with Last-Event-ID, and gets
exactly the verdicts it had not received (from the HMI's memory).
"""
from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

from starlette.requests import Request
from starlette.responses import StreamingResponse

from hmi.context import Hmi
from hmi.views import live_row

SUMMARY_EVERY_S = 1.0
DEFAULT_ROWS = 50


def _event(kind: str, data: Any, event_id: str = "") -> str:
    head = f"id: {event_id}\n" if event_id else ""
    return f"{head}event: {kind}\ndata: {json.dumps(data, separators=(',', ':'))}\n\n"


async def _stream(hmi: Hmi, after: str, rows: int) -> AsyncIterator[str]:
    hmi.metrics.event_clients.inc()
    wake = hmi.store.subscribe()
    try:
        yield "retry: 1000\n\n"
        if after:
            backlog = hmi.store.after(after)
        else:
            backlog = list(reversed(hmi.store.recent(rows))) if rows else []
        sent = backlog[-1].stream_id if backlog else (after or hmi.store.status.last_stream_id or "0-0")
        for v in backlog:
            yield _event("verdict", live_row(v), v.stream_id)
        while True:
            yield _event("summary", hmi.summary())
            try:
                await asyncio.wait_for(wake.wait(), timeout=SUMMARY_EVERY_S)
            except TimeoutError:
                pass
            wake.clear()
            for v in hmi.store.after(sent):
                sent = v.stream_id
                if rows:
                    yield _event("verdict", live_row(v), v.stream_id)
    finally:
        hmi.store.unsubscribe(wake)
        hmi.metrics.event_clients.dec()


async def events(request: Request) -> StreamingResponse:
    hmi: Hmi = request.app.state.hmi
    after = request.headers.get("last-event-id") or request.query_params.get("after", "")
    try:
        rows = max(0, min(500, int(request.query_params.get("rows", DEFAULT_ROWS))))
    except ValueError:
        rows = DEFAULT_ROWS
    return StreamingResponse(_stream(hmi, after, rows), media_type="text/event-stream",
                             headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"})
