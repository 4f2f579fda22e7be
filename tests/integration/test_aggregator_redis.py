"""The aggregator against a real redis-server: one verdict per acquisition, whatever fails around it."""
from __future__ import annotations

import json
import sqlite3
import threading
import time
from dataclasses import replace
from pathlib import Path

import pytest

from aggregator.publish import DEAD_LETTER_STREAM
from aggregator.shutdown import Shutdown
from tests.integration.aggregator_support import (  # noqa: F401  (fixtures)
    THRESHOLD, add, aggregator, drain, model_repo, needs_redis, pending, redis_server, scores, verdicts_on_stream,
    wait_for,
)
from tests.integration.redis_server import RedisServer
from vialguard.messages import (
    CONSUMER_GROUP, SCORES_STREAM, VERDICTS_STREAM, VerdictMessage, product_key, reply_key, verdict_key,
)

pytestmark = [pytest.mark.integration, needs_redis]


def test_verdict_goes_to_the_stream_the_waiting_preprocessor_the_key_and_the_audit(
        redis_server: RedisServer, model_repo: Path, tmp_path: Path) -> None:
    client = redis_server.client()
    agg = aggregator(redis_server, model_repo, tmp_path / "audit.sqlite3")
    add(client, scores("A-ok", worst=0.1))
    add(client, scores("A-bad", run=1, worst=0.9))
    drain(agg)
    _, reply = client.blpop([reply_key("A-bad")], timeout=1)
    bad = VerdictMessage.from_json(reply)
    assert bad.decision == "REJECT" and bad.model_version == 1 and bad.threshold_set == "run"
    assert [(p.frame, p.vial, p.region) for p in bad.patches if p.over] == [(2, 4, 3)]
    assert VerdictMessage.from_json(client.get(verdict_key("A-ok"))).decision == "ACCEPT"
    assert 0 < client.ttl(reply_key("A-ok")) <= agg.config.reply_ttl_s
    assert [v.acquisition_id for v in verdicts_on_stream(client)] == ["A-ok", "A-bad"]
    assert client.hgetall(product_key("P1")) == {b"0": b"ACCEPT", b"1": b"REJECT"}
    record = agg.audit.get_record("A-bad")
    assert record["verdict"]["patches"][59]["score"] == 0.9
    assert record["context"]["thresholds"] == {"R0": THRESHOLD, "R1": THRESHOLD, "R2": THRESHOLD, "R3": THRESHOLD}
    assert "inference_ms" in record["verdict"]["timings_ms"]
    assert pending(client) == 0


def test_duplicate_scores_give_exactly_one_verdict_and_one_record(
        redis_server: RedisServer, model_repo: Path, tmp_path: Path) -> None:
    client = redis_server.client()
    agg = aggregator(redis_server, model_repo, tmp_path / "audit.sqlite3")
    for _ in range(3):
        add(client, scores("A-dup", worst=0.9))
    drain(agg)
    add(client, scores("A-dup", worst=0.1))  # a late retry with other scores: the first verdict stands
    drain(agg)
    assert [v.decision for v in verdicts_on_stream(client)] == ["REJECT"]
    assert agg.audit.count() == 1
    assert client.lrange(reply_key("A-dup"), 0, -1) == [client.get(verdict_key("A-dup"))]  # one reply waiting
    assert VerdictMessage.from_json(client.get(verdict_key("A-dup"))).run_policy.runs_seen == 1
    assert agg.counts["decided"] == 1 and agg.counts["republished"] == 3
    assert pending(client) == 0


def test_entries_a_dead_consumer_read_are_reclaimed_and_judged(
        redis_server: RedisServer, model_repo: Path, tmp_path: Path) -> None:
    client = redis_server.client()
    agg = aggregator(redis_server, model_repo, tmp_path / "audit.sqlite3", consumer="survivor")
    agg.poll()  # creates the group
    for i in range(5):
        add(client, scores(f"A{i}", run=i))
    # a consumer reads them and dies before acking
    taken = client.xreadgroup(CONSUMER_GROUP, "dead-one", {SCORES_STREAM: ">"}, count=10)
    assert len(taken[0][1]) == 5 and pending(client) == 5
    started = time.monotonic()
    wait_for(lambda: (agg.poll(), agg.audit.count() == 5)[1], 5.0, "the survivor to judge the dead one's entries")
    assert time.monotonic() - started >= agg.config.claim_idle_ms / 1000 * 0.9  # not stolen from a live consumer
    assert sorted(v.acquisition_id for v in verdicts_on_stream(client)) == [f"A{i}" for i in range(5)]
    assert agg.counts["reclaimed"] == 5 and pending(client) == 0


def test_poison_is_set_aside_and_the_loop_goes_on(
        redis_server: RedisServer, model_repo: Path, tmp_path: Path) -> None:
    client = redis_server.client()
    agg = aggregator(redis_server, model_repo, tmp_path / "audit.sqlite3")
    client.xadd(SCORES_STREAM, {"acquisition_id": "A-garbage", "data": "{not json"})
    bad_region = json.loads(scores("A-region").to_fields()["data"])
    bad_region["patches"][0]["region"] = 9
    client.xadd(SCORES_STREAM, {"acquisition_id": "A-region", "data": json.dumps(bad_region)})
    add(client, scores("A-fine"))
    drain(agg)
    dead = client.xrange(DEAD_LETTER_STREAM)
    assert [json.loads(f[b"fields"])["acquisition_id"] for _, f in dead] == ["A-garbage", "A-region"]
    assert b"not JSON" in dead[0][1][b"reason"] and b"region" in dead[1][1][b"reason"]
    assert [v.acquisition_id for v in verdicts_on_stream(client)] == ["A-fine"]
    assert pending(client) == 0


def test_unknown_model_version_is_rejected_and_the_audit_says_why(
        redis_server: RedisServer, model_repo: Path, tmp_path: Path) -> None:
    client = redis_server.client()
    agg = aggregator(redis_server, model_repo, tmp_path / "audit.sqlite3")
    msg = replace(scores("A-v7", worst=0.0), model_version=7)
    add(client, msg)
    drain(agg)
    assert VerdictMessage.from_json(client.get(verdict_key("A-v7"))).decision == "REJECT"
    record = agg.audit.get_record("A-v7")
    assert record["verdict"]["threshold_set"] == "missing-calibration" and "7" in record["context"]["threshold_problem"]


def test_no_verdict_is_published_before_it_is_recorded(
        redis_server: RedisServer, model_repo: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    client = redis_server.client()
    agg = aggregator(redis_server, model_repo, tmp_path / "audit.sqlite3")
    real_append, published_at_append = agg.audit.append, []

    def disk_failing_twice(verdict: VerdictMessage, context: dict | None = None):
        published_at_append.append(client.exists(verdict_key(verdict.acquisition_id)) + client.xlen(VERDICTS_STREAM))
        if len(published_at_append) <= 2:
            raise sqlite3.OperationalError("disk I/O error")
        return real_append(verdict, context)

    monkeypatch.setattr(agg.audit, "append", disk_failing_twice)
    add(client, scores("A-disk"))
    shutdown = Shutdown()
    loop = threading.Thread(target=agg.run, args=(shutdown,))
    loop.start()
    try:
        wait_for(lambda: client.exists(verdict_key("A-disk")) and pending(client) == 0, 10.0, "the verdict")
    finally:
        shutdown.request()
        loop.join(5)
    assert published_at_append == [0, 0, 0]  # while the record failed, nothing went out and the entry waited
    assert [v.acquisition_id for v in verdicts_on_stream(client)] == ["A-disk"]


def test_an_entry_trimmed_before_it_was_judged_is_acknowledged(
        redis_server: RedisServer, model_repo: Path, tmp_path: Path) -> None:
    client = redis_server.client()
    agg = aggregator(redis_server, model_repo, tmp_path / "audit.sqlite3", consumer="same-name")
    agg.poll()
    add(client, scores("A-gone"))
    entry_id = client.xreadgroup(CONSUMER_GROUP, "same-name", {SCORES_STREAM: ">"})[0][1][0][0]
    client.xdel(SCORES_STREAM, entry_id)
    agg._read_own_pending = True  # as after a restart under the same consumer name
    drain(agg)
    assert agg.counts["vanished"] == 1 and pending(client) == 0 and client.xlen(DEAD_LETTER_STREAM) == 0


def test_run_state_lost_with_redis_is_rebuilt_from_the_audit(
        redis_server: RedisServer, model_repo: Path, tmp_path: Path) -> None:
    client = redis_server.client()
    audit = tmp_path / "audit.sqlite3"
    agg = aggregator(redis_server, model_repo, audit)
    for run in range(6):
        add(client, scores(f"A{run}", run=run, worst=0.9 if run == 0 else 0.1))
    drain(agg)
    client.flushall()  # Redis came back empty: no stream, no group, no product state
    agg = aggregator(redis_server, model_repo, audit, consumer="agg-after")
    for run in range(6, 10):
        add(client, scores(f"A{run}", run=run, worst=0.1))
    drain(agg)
    state = VerdictMessage.from_json(client.get(verdict_key("A9"))).run_policy
    assert (state.runs_seen, state.accepts, state.rejects, state.product_decision) == (10, 9, 1, "ACCEPT")
