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
PATCH_FIELD = "patch:"  # hash field prefix of the inspected patch beside its heatmap (field = its index)


class HeatmapStore:
    def __init__(self, client: redis.Redis, ttl_s: int, max_acquisitions: int) -> None:
        self._client = client
        self._ttl_s = ttl_s
        self._max = max_acquisitions

    def put(self, acquisition_id: str, pngs: Mapping[int, bytes], patch_pngs: Mapping[int, bytes] | None = None) -> None:
        """Store patch index -> heatmap PNG (and the patch's own PNG) for one acquisition, then enforce both bounds."""
        if not pngs:
            return
        now_ms = int(time.time() * 1000)
        key = heatmap_key(acquisition_id)
        pipe = self._client.pipeline(transaction=False)
        pipe.delete(key)
        fields = {str(i): png for i, png in pngs.items()}
        fields.update({f"{PATCH_FIELD}{i}": png for i, png in (patch_pngs or {}).items() if i in pngs})
        pipe.hset(key, mapping=fields)
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
        """Patch index -> heatmap PNG; empty when none are kept (accepted, unknown or expired)."""
        return self.get_with_patches(acquisition_id)[0]

    def get_with_patches(self, acquisition_id: str) -> tuple[dict[int, bytes], dict[int, bytes]]:
        """(patch index -> heatmap PNG, patch index -> the patch's PNG), in one read."""
        heatmaps: dict[int, bytes] = {}
        patches: dict[int, bytes] = {}
        for field, png in self._client.hgetall(heatmap_key(acquisition_id)).items():
            name = field.decode() if isinstance(field, bytes) else str(field)
            if name.startswith(PATCH_FIELD) and name[len(PATCH_FIELD):].isdigit():
                patches[int(name[len(PATCH_FIELD):])] = png
            elif name.isdigit():
                heatmaps[int(name)] = png
        return heatmaps, patches
