"""The aggregator as a process (and as a pair) on a real redis-server: stops, Redis restarts, throughput."""
from __future__ import annotations

import signal
import threading
import time
from pathlib import Path

import pytest

from aggregator.audit import AuditStore
from aggregator.consumer import Aggregator
from aggregator.service import serve
from aggregator.shutdown import Shutdown
from tests.integration.aggregator_support import (  # noqa: F401  (fixtures)
    add, aggregator, drain, make_config, model_repo, needs_redis, pending, redis_server, scores, spawn,
    verdicts_on_stream, wait_for,
)
from tests.integration.redis_server import RedisServer
from vialguard.messages import VERDICTS_STREAM, product_key

pytestmark = [pytest.mark.integration, needs_redis]


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


def test_a_deleted_audit_file_is_restored_while_running_and_a_cut_one_stops_the_start(
        redis_server: RedisServer, model_repo: Path, tmp_path: Path) -> None:
    """Issue 7: deleting the database under a running aggregator lost the records of verdicts already
    answered and began a new chain at seq 1; a cut tail went unnoticed at the next start."""
    client = redis_server.client()
    audit, log = tmp_path / "audit" / "verdicts.sqlite3", tmp_path / "aggregator.log"
    proc = spawn(redis_server, model_repo, audit, log)
    try:
        for i in range(10):
            add(client, scores(f"D{i}", product=f"P{i}"))
        wait_for(lambda: client.xlen(VERDICTS_STREAM) == 10, 30.0, f"10 verdicts ({log})")
        for f in (audit, audit.with_name(audit.name + "-wal"), audit.with_name(audit.name + "-shm")):
            f.unlink(missing_ok=True)
        for i in range(10, 15):
            add(client, scores(f"D{i}", product=f"P{i}"))
        wait_for(lambda: client.xlen(VERDICTS_STREAM) == 15, 30.0, f"5 more verdicts ({log})")
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=10) == 0, log.read_text()
    finally:
        if proc.poll() is None:
            proc.kill()
    assert "was DELETED while the aggregator ran; its 10 records were restored" in log.read_text()
    store = AuditStore(audit)
    assert store.head()[0] == 15 and store.verify_chain().ok  # one chain, nothing lost
    store.close()
    import sqlite3

    db = sqlite3.connect(audit)  # cut the last record, going round the trigger
    db.execute("DROP TRIGGER verdicts_no_delete")
    db.execute("DELETE FROM verdicts WHERE seq=15")
    db.commit()
    db.close()
    second_log = tmp_path / "second.log"
    again = spawn(redis_server, model_repo, audit, second_log, consumer="second")
    try:
        assert again.wait(timeout=30) == 1
    finally:
        if again.poll() is None:
            again.kill()
    text = second_log.read_text()
    assert "does not start" in text and "ends at seq 14 but the anchor records seq 15" in text
