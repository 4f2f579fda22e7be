"""The aggregator's health probe against the real redis-server: an idle, turning loop is alive (issue 7)."""
from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import pytest

import vialguard_stack.probes as probes
from aggregator.shutdown import Shutdown
from tests.integration.aggregator_support import aggregator, model_repo, needs_redis, redis_server  # noqa: F401
from tests.integration.redis_server import RedisServer
from vialguard.messages import CONSUMER_GROUP, SCORES_STREAM

pytestmark = [pytest.mark.integration, needs_redis]


def test_an_idle_aggregator_stays_healthy_and_a_stopped_one_does_not(
        redis_server: RedisServer, model_repo: Path, tmp_path: Path) -> None:
    agg = aggregator(redis_server, model_repo, tmp_path / "audit.sqlite3", consumer="idle-host-1")
    version = redis_server.client().info("server")["redis_version"]
    shutdown = Shutdown()
    loop = threading.Thread(target=agg.run, args=(shutdown,), daemon=True)
    loop.start()
    try:
        time.sleep(2.5)  # nothing to read: on Redis 7.0 XINFO's idle grows all this time
        ok, reason = probes.consumer_active(redis_server.url, SCORES_STREAM, CONSUMER_GROUP, "idle-host",
                                            max_idle_ms=1500)
        assert ok, f"Redis {version}: {reason}"
        assert "loop turned" in reason
    finally:
        shutdown.request()
        loop.join(5)
    time.sleep(2.0)
    ok, reason = probes.consumer_active(redis_server.url, SCORES_STREAM, CONSUMER_GROUP, "idle-host",
                                        max_idle_ms=1500)
    assert not ok, reason  # a loop that stopped turning is reported as such


class FakeRedis:
    """XINFO CONSUMERS as Redis 7.4 answers it (with 'inactive'), and no heartbeat key."""

    def __init__(self, consumers: list[dict[str, Any]]) -> None:
        self.consumers = consumers

    def xinfo_consumers(self, stream: str, group: str) -> list[dict[str, Any]]:
        return self.consumers

    def pttl(self, key: str) -> int:
        return -2

    def close(self) -> None:
        pass


@pytest.mark.parametrize(("idle", "ok"), [(200, True), (40_000, False)])
def test_on_redis_7_4_without_a_heartbeat_idle_counts_from_the_last_attempt(
        monkeypatch: pytest.MonkeyPatch, idle: int, ok: bool) -> None:
    import redis

    fake = FakeRedis([{"name": "host-1", "pending": 0, "idle": idle, "inactive": 50_000}])
    monkeypatch.setattr(redis.Redis, "from_url", staticmethod(lambda *a, **k: fake))
    passed, reason = probes.consumer_active("redis://x", SCORES_STREAM, CONSUMER_GROUP, "host", max_idle_ms=30_000)
    assert passed is ok and "last read attempt" in reason
