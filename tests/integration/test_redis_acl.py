"""Each service works as its own Redis ACL user with only what vialguard.redis_acl grants, and no more."""
from __future__ import annotations

import secrets
import threading
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import grpc
import pytest
import redis

import vialguard_stack.probes as probes
from aggregator.audit import AuditStore
from aggregator.config import AggregatorConfig
from aggregator.consumer import Aggregator
from aggregator.service import connect as aggregator_connect
from aggregator.thresholds import ThresholdCache
from preprocessor.encode import build_acquisition
from tests.integration.aggregator_support import drain, model_repo, needs_redis  # noqa: F401 (fixture)
from tests.integration.preprocessor_support import RECIPE, close_stack, make_config, open_stack, random_frames
from tests.integration.redis_server import RedisServer
from vialguard import redis_acl
from vialguard.messages import CONSUMER_GROUP, SCORES_STREAM, VERDICTS_STREAM
from vialguard.patching import select_inspected
from vialguard.v1 import inspection_pb2 as pb

pytestmark = [pytest.mark.integration, needs_redis]
PASSWORDS = {user: secrets.token_hex(8) for user in redis_acl.SERVICES}


@pytest.fixture
def acl_redis(tmp_path: Path) -> Iterator[RedisServer]:
    with RedisServer(tmp_path / "redis", extra_args=redis_acl.server_args(PASSWORDS), username="healthcheck",
                     password=PASSWORDS["healthcheck"]) as server:
        yield server


def url(server: RedisServer, user: str) -> str:
    return redis_acl.url_for(user, PASSWORDS[user], "127.0.0.1", server.port)


def test_the_line_runs_end_to_end_with_one_user_per_service(acl_redis: RedisServer, model_repo: Path,
                                                             tmp_path: Path) -> None:
    config = AggregatorConfig(redis_url=url(acl_redis, "aggregator"), consumer="acl-agg", model_repository=model_repo,
                              audit_db=tmp_path / "audit.sqlite3", block_ms=50, claim_idle_ms=300)
    agg = Aggregator(config, aggregator_connect(config), AuditStore(config.audit_db), ThresholdCache(model_repo))
    stack = open_stack(acl_redis, replace(make_config(url(acl_redis, "preprocessor")), deadline_ms=8000))
    halt = threading.Event()
    loop = threading.Thread(target=lambda: [agg.poll() for _ in iter(halt.is_set, True)], daemon=True)
    loop.start()
    try:
        frames = select_inspected(random_frames(), RECIPE)
        acq = build_acquisition("acl-1", "P-acl", 0, RECIPE.id, frames, RECIPE.inspected_frames)
        watcher = stack.stub.WatchVerdicts(pb.WatchRequest(), timeout=20)
        verdict = stack.stub.Inspect(acq, timeout=20)
        assert verdict.decision in (pb.ACCEPT, pb.REJECT) and not verdict.replayed
        assert next(iter(watcher)).acquisition_id == "acl-1"
        watcher.cancel()
        assert stack.stub.Inspect(acq, timeout=20).replayed  # the replay path too
        if verdict.decision == pb.REJECT:
            assert stack.stub.GetHeatmaps(pb.HeatmapRequest(acquisition_id="acl-1"), timeout=5).heatmaps
        stack.redis.xadd(SCORES_STREAM, {"acquisition_id": "poison", "data": "not json"})  # dead-letter path
        halt.set()
        loop.join(5)
        drain(agg)
        assert agg.counts["dead-lettered"] == 1
        ok, reason = probes.consumer_active(url(acl_redis, "aggregator"), SCORES_STREAM, CONSUMER_GROUP, "acl-agg",
                                            max_idle_ms=5000)
        assert ok, reason
    finally:
        halt.set()
        close_stack(stack)
        agg.audit.close()


@pytest.mark.parametrize("user", ["preprocessor", "aggregator", "healthcheck"])
def test_a_service_user_cannot_do_what_it_does_not_need(acl_redis: RedisServer, user: str) -> None:
    client = redis.Redis.from_url(url(acl_redis, user), protocol=2)
    try:
        for forbidden in (lambda: client.flushall(), lambda: client.config_get("*"), lambda: client.keys("*"),
                          lambda: client.set("other:key", "x"), lambda: client.acl_list()):
            with pytest.raises(redis.exceptions.NoPermissionError):
                forbidden()
        assert client.ping()
    finally:
        client.close()


def test_the_preprocessor_cannot_forge_verdicts_and_the_default_user_is_off(acl_redis: RedisServer) -> None:
    pre = redis.Redis.from_url(url(acl_redis, "preprocessor"), protocol=2)
    try:
        with pytest.raises(redis.exceptions.NoPermissionError):
            pre.set("vialguard:verdict:forged", "{}")  # read-only for it: verdicts come from the aggregator
        with pytest.raises(redis.exceptions.NoPermissionError):
            pre.xadd(VERDICTS_STREAM, {"data": "{}"})
    finally:
        pre.close()
    anonymous = redis.Redis(host="127.0.0.1", port=acl_redis.port, protocol=2)
    try:
        with pytest.raises((redis.exceptions.AuthenticationError, redis.exceptions.ResponseError)):
            anonymous.get("vialguard:verdicts")
    finally:
        anonymous.close()
    assert isinstance(grpc.StatusCode.OK, grpc.StatusCode)
