"""Helpers of the aggregator's integration tests: a real Redis, a model repository, scores."""
from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path

import pytest
import redis

from aggregator.audit import AuditStore
from aggregator.config import AggregatorConfig
from aggregator.consumer import Aggregator
from aggregator.service import connect
from aggregator.thresholds import ThresholdCache
from tests.integration.redis_server import REDIS_SERVER, RedisServer
from vialguard.calibration import Calibration
from vialguard.decision import RegionThresholds
from vialguard.messages import (
    CONSUMER_GROUP, SCORES_STREAM, VERDICTS_STREAM, PatchScore, ScoresMessage, VerdictMessage,
)
from vialguard.model_repository import publish_version

needs_redis = pytest.mark.skipif(not Path(REDIS_SERVER).exists(), reason="redis-server is not installed")
REPO_ROOT = Path(__file__).resolve().parents[2]
THRESHOLD = 0.2


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[RedisServer]:
    with RedisServer(tmp_path / "redis") as server:
        yield server


@pytest.fixture
def model_repo(tmp_path: Path) -> Path:
    def write(d: Path) -> None:
        (d / "model.onnx").write_bytes(b"dummy onnx")
        th = RegionThresholds(THRESHOLD, THRESHOLD, THRESHOLD, THRESHOLD)
        Calibration(profile="cpu", patch_size=64, recipe_id="bfs5-10ml", recipe_digest="sha256:r",
                    training_data_digest="sha256:d", thresholds={"patch": th, "strip": th, "run": th}).save(
            d / "calibration.json")
    repo = tmp_path / "models"
    assert publish_version(repo, write) == 1
    return repo


def make_config(server: RedisServer, repo: Path, audit: Path, consumer: str, **overrides: object) -> AggregatorConfig:
    base = AggregatorConfig(redis_url=server.url, consumer=consumer, model_repository=repo, audit_db=audit,
                            block_ms=50, claim_idle_ms=300, batch_count=8, reconnect_max_s=0.5)
    return replace(base, **overrides)


def scores(acq: str, product: str = "P1", run: int = 0, worst: float = 0.05) -> ScoresMessage:
    patches = [PatchScore(f, v, r, worst if (f, v, r) == (2, 4, 3) else 0.05)
               for f in range(3) for v in range(5) for r in range(4)]
    return ScoresMessage(acq, product, run, "bfs5-10ml", "inspector", 1, patches, {"inference_ms": 5.0},
                         received_unix_ms=int(time.time() * 1000))


def add(client: redis.Redis, msg: ScoresMessage) -> None:
    client.xadd(SCORES_STREAM, msg.to_fields())


def drain(agg: Aggregator, idle_rounds: int = 2) -> None:
    """Poll until a few rounds in a row find nothing (the block makes each round wait)."""
    quiet = 0
    while quiet < idle_rounds:
        quiet = quiet + 1 if agg.poll() == 0 else 0


def verdicts_on_stream(client: redis.Redis) -> list[VerdictMessage]:
    return [VerdictMessage.from_json(f[b"data"]) for _, f in client.xrange(VERDICTS_STREAM)]


def pending(client: redis.Redis) -> int:
    return int(client.xpending(SCORES_STREAM, CONSUMER_GROUP)["pending"])


def wait_for(condition: Callable[[], bool], timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s} s waiting for {what}")
        time.sleep(0.02)


def aggregator(server: RedisServer, repo: Path, audit: Path, consumer: str = "agg-1", **kw: object) -> Aggregator:
    config = make_config(server, repo, audit, consumer, **kw)
    return Aggregator(config, connect(config), AuditStore(audit), ThresholdCache(repo))


def spawn(server: RedisServer, repo: Path, audit: Path, log: Path, consumer: str = "agg-proc") -> subprocess.Popen[bytes]:
    env = dict(os.environ, PYTHONPATH=str(REPO_ROOT), VIALGUARD_REDIS_URL=server.url,
               VIALGUARD_MODEL_REPOSITORY=str(repo), VIALGUARD_AUDIT_DB=str(audit), AGGREGATOR_CONSUMER=consumer,
               AGGREGATOR_BLOCK_MS="100", AGGREGATOR_BATCH_COUNT="8", AGGREGATOR_RECONNECT_MAX_S="0.5")
    return subprocess.Popen([sys.executable, "-m", "aggregator"], cwd=REPO_ROOT, env=env,
                            stdout=open(log, "wb"), stderr=subprocess.STDOUT)
