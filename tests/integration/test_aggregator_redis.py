"""The aggregator against a real redis-server: one verdict per acquisition, whatever fails around it."""
from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path

import pytest
import redis

from aggregator.audit import AuditStore
from aggregator.config import AggregatorConfig
from aggregator.consumer import Aggregator
from aggregator.publish import DEAD_LETTER_STREAM
from aggregator.service import connect, serve
from aggregator.shutdown import Shutdown
from aggregator.thresholds import ThresholdCache
from tests.integration.redis_server import REDIS_SERVER, RedisServer
from vialguard.calibration import Calibration
from vialguard.decision import RegionThresholds
from vialguard.messages import (
    CONSUMER_GROUP, SCORES_STREAM, VERDICTS_STREAM, PatchScore, ScoresMessage, VerdictMessage,
    product_key, reply_key, verdict_key,
)
from vialguard.model_repository import publish_version

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(not Path(REDIS_SERVER).exists(), reason="redis-server is not installed"),
]
REPO_ROOT = Path(__file__).resolve().parents[2]
THRESHOLD = 0.2


# ---- fixtures and helpers ----------------------------------------------------------------------

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


# ---- the rules ----------------------------------------------------------------------------------

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


def test_sigterm_finishes_the_work_in_hand_and_exits_0(
        redis_server: RedisServer, model_repo: Path, tmp_path: Path) -> None:
    client = redis_server.client()
    audit, log = tmp_path / "audit.sqlite3", tmp_path / "aggregator.log"
    proc = spawn(redis_server, model_repo, audit, log)
    stop_feeding, fed = threading.Event(), []

    def feed() -> None:  # the line keeps running while the aggregator is stopped
        feeder = redis_server.client()
        while not stop_feeding.is_set():
            fed.append(f"A{len(fed)}")
            add(feeder, scores(fed[-1], product=f"P{len(fed)}"))
            time.sleep(0.002)

    feeder = threading.Thread(target=feed)
    feeder.start()
    try:
        wait_for(lambda: client.xlen(VERDICTS_STREAM) >= 20, 30.0, f"verdicts from the aggregator ({log})")
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=10) == 0, log.read_text()
    finally:
        stop_feeding.set()
        feeder.join()
        if proc.poll() is None:
            proc.kill()
    assert pending(client) == 0  # nothing it had read was left unfinished
    first = {v.acquisition_id for v in verdicts_on_stream(client)}
    assert AuditStore(audit).count() == len(first) < len(fed)  # stopped mid-stream
    assert "finishing the entries in hand" in log.read_text()
    agg = aggregator(redis_server, model_repo, audit, consumer="next")  # the rest goes to the next one
    drain(agg)
    on_stream = [v.acquisition_id for v in verdicts_on_stream(client)]
    assert sorted(on_stream) == sorted(fed) and len(set(on_stream)) == len(fed)
    assert agg.audit.verify_chain().ok


def test_redis_restart_mid_stream_loses_nothing(model_repo: Path, tmp_path: Path) -> None:
    audit, log = tmp_path / "audit.sqlite3", tmp_path / "aggregator.log"
    with RedisServer(tmp_path / "redis-aof", appendonly=True) as server:
        client = server.client()
        proc = spawn(server, model_repo, audit, log)
        try:
            for i in range(150):
                add(client, scores(f"A{i}", product=f"P{i % 15}", run=i // 15))
            wait_for(lambda: client.xlen(VERDICTS_STREAM) >= 10, 30.0, f"first verdicts ({log})")
            server.restart()
            for i in range(150, 300):
                add(client, scores(f"A{i}", product=f"P{i % 15}", run=i // 15))
            wait_for(lambda: AuditStore(audit).count() == 300 and pending(client) == 0, 60.0,
                     f"all 300 verdicts after the restart ({log})")
            assert proc.poll() is None, "the aggregator must ride out a Redis restart"
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(timeout=10) == 0
        finally:
            if proc.poll() is None:
                proc.kill()
        on_stream = [v.acquisition_id for v in verdicts_on_stream(client)]
        assert sorted(on_stream) == sorted(f"A{i}" for i in range(300))  # each exactly once
        assert all(client.hlen(product_key(f"P{p}")) == 20 for p in range(15))
    store = AuditStore(audit)
    assert store.count() == 300 and store.verify_chain().ok  # the record outlived Redis


def test_two_aggregators_give_every_acquisition_exactly_one_verdict(
        redis_server: RedisServer, model_repo: Path, tmp_path: Path) -> None:
    client = redis_server.client()
    audit, n = tmp_path / "audit.sqlite3", 400
    for i in range(n):
        add(client, scores(f"A{i}", product=f"P{i % 40}", run=i // 40, worst=0.9 if i % 7 == 0 else 0.1))
    for i in range(0, n, 10):  # the preprocessor retried some
        add(client, scores(f"A{i}", product=f"P{i % 40}", run=i // 40))
    shutdown = Shutdown()
    configs = [make_config(redis_server, model_repo, audit, f"agg-{k}") for k in (1, 2)]
    results: list[Aggregator] = []
    threads = [threading.Thread(target=lambda c=c: results.append(serve(c, shutdown))) for c in configs]
    started = time.perf_counter()
    for t in threads:
        t.start()
    wait_for(lambda: client.xlen(VERDICTS_STREAM) >= n and pending(client) == 0, 60.0, "all verdicts")
    elapsed = time.perf_counter() - started
    shutdown.request()
    for t in threads:
        t.join(10)
    on_stream = [v.acquisition_id for v in verdicts_on_stream(client)]
    assert sorted(on_stream) == sorted(f"A{i}" for i in range(n))
    assert all(r.counts["decided"] > 0 for r in results), "both consumers took part"
    store = AuditStore(audit)
    assert store.count() == n and store.verify_chain().ok
    rejected = {v.acquisition_id for v in verdicts_on_stream(client) if v.decision == "REJECT"}
    assert rejected == {f"A{i}" for i in range(n) if i % 7 == 0}
    print(f"\n2 aggregators, real Redis: {n} verdicts (+{n // 10} duplicates) in {elapsed:.2f} s "
          f"= {n / elapsed:.0f} verdicts/s")
