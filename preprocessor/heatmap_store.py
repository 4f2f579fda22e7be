"""Heatmaps of rejected acquisitions, kept in Redis for the operator screens.

Bounded two ways: each acquisition's hash expires after a TTL, and an index
(sorted by time) keeps at most ``max_acquisitions`` of them, dropping the
oldest first, so a burst of rejects cannot fill Redis, which is the queue of
the line. Heatmaps are a convenience for people, not a record: the audit store
holds the scores that decided.
"""
from __future__ import annotations

import time
from collections.abc import Mapping

import redis

from vialguard.messages import heatmap_key

HEATMAP_INDEX = "vialguard:heatmaps:index"  # sorted set: acquisition_id -> stored at (unix ms)


class HeatmapStore:
    def __init__(self, client: redis.Redis, ttl_s: int, max_acquisitions: int) -> None:
        self._client = client
        self._ttl_s = ttl_s
        self._max = max_acquisitions

    def put(self, acquisition_id: str, pngs: Mapping[int, bytes]) -> None:
        """Store patch index -> PNG for one acquisition, then enforce both bounds."""
        if not pngs:
            return
        now_ms = int(time.time() * 1000)
        key = heatmap_key(acquisition_id)
        pipe = self._client.pipeline(transaction=False)
        pipe.delete(key)
        pipe.hset(key, mapping={str(i): png for i, png in pngs.items()})
        pipe.expire(key, self._ttl_s)
        pipe.zadd(HEATMAP_INDEX, {acquisition_id: now_ms})
        pipe.zremrangebyscore(HEATMAP_INDEX, "-inf", now_ms - self._ttl_s * 1000)  # expired on their own
        pipe.zcard(HEATMAP_INDEX)
        count = pipe.execute()[-1]
        if count > self._max:
            oldest = self._client.zpopmin(HEATMAP_INDEX, count - self._max)
            if oldest:
                self._client.delete(*(heatmap_key(member.decode()) for member, _ in oldest))

    def get(self, acquisition_id: str) -> dict[int, bytes]:
        """Patch index -> PNG; empty when none are kept (accepted, unknown or expired)."""
        stored = self._client.hgetall(heatmap_key(acquisition_id))
        return {int(index): png for index, png in stored.items()}
