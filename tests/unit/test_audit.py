"""The audit store is append-only, hash-chained, idempotent and outlives the process."""
from __future__ import annotations

import sqlite3
import subprocess
import sys
from dataclasses import asdict
from pathlib import Path

import pytest

from aggregator.audit import GENESIS_HASH, AuditStore, verdict_dict
from vialguard.messages import PatchVerdict, RunPolicyState, VerdictMessage

REPO = Path(__file__).resolve().parents[2]


def verdict(acq: str, decision: str = "ACCEPT", product: str = "P1", run: int = 0, score: float = 0.1) -> VerdictMessage:
    return VerdictMessage(
        acq, product, run, decision, score, score - 0.2, "inspector", 3, "run",
        [PatchVerdict(0, 0, 0, score, 0.2, score > 0.2)], RunPolicyState(7, 10, 1, 1, 0, "PENDING"),
        {"inference_ms": 4.5}, 1_700_000_000_000,
    )


@pytest.fixture
def store(tmp_path: Path) -> AuditStore:
    s = AuditStore(tmp_path / "audit" / "verdicts.sqlite3")
    for i in range(5):
        s.append(verdict(f"A{i}", run=i), {"thresholds": {"R0": 0.2}})
    return s


def test_recorded_verdict_reads_back_whole(store: AuditStore) -> None:
    assert store.get("A2") == verdict("A2", run=2)
    assert store.get_record("A2")["context"] == {"thresholds": {"R0": 0.2}}
    assert store.get("nope") is None


def test_append_is_idempotent_on_acquisition_id(store: AuditStore) -> None:
    recorded, created = store.append(verdict("A1", decision="REJECT", score=0.9, run=1))
    assert not created
    assert recorded == verdict("A1", run=1)  # the first verdict stands
    assert store.count() == 5
    assert store.verify_chain().ok


@pytest.mark.parametrize("sql", [
    "UPDATE verdicts SET decision='ACCEPT' WHERE acquisition_id='A3'",
    "DELETE FROM verdicts WHERE acquisition_id='A3'",
    "DELETE FROM verdicts",
])
def test_update_and_delete_are_refused(store: AuditStore, sql: str) -> None:
    db = sqlite3.connect(store.path)
    with pytest.raises(sqlite3.IntegrityError, match="append-only"):
        db.execute(sql)
    db.close()
    assert store.count() == 5 and store.verify_chain().ok


def test_chain_links_every_row_to_the_previous_one(store: AuditStore) -> None:
    report = store.verify_chain()
    assert report.ok and report.rows == 5 and report.head_hash == store.head()[1] != GENESIS_HASH


def _tamper(path: Path, *statements: str) -> None:
    """What someone with the file could do: remove the triggers, then edit."""
    db = sqlite3.connect(path)
    db.execute("DROP TRIGGER verdicts_no_update")
    db.execute("DROP TRIGGER verdicts_no_delete")
    for sql in statements:
        db.execute(sql)
    db.commit()
    db.close()


def test_a_record_edited_in_the_file_is_found(store: AuditStore) -> None:
    _tamper(store.path, "UPDATE verdicts SET record_json=replace(record_json, '0.1', '0.01') WHERE acquisition_id='A2'")
    report = store.verify_chain()
    assert not report.ok and report.first_bad_seq == 3 and "altered" in report.problem


def test_an_indexed_column_edited_alone_is_found(store: AuditStore) -> None:
    _tamper(store.path, "UPDATE verdicts SET decision='REJECT' WHERE acquisition_id='A1'")
    report = store.verify_chain()
    assert not report.ok and report.first_bad_seq == 2


def test_a_deleted_row_is_found(store: AuditStore) -> None:
    _tamper(store.path, "DELETE FROM verdicts WHERE acquisition_id='A3'")
    report = store.verify_chain()
    assert not report.ok and report.first_bad_seq == 5 and "removed" in report.problem


def test_a_removed_tail_is_found_against_a_recorded_anchor(store: AuditStore) -> None:
    anchor = store.head()
    _tamper(store.path, "DELETE FROM verdicts WHERE seq=5")
    assert store.verify_chain().ok  # a chain alone cannot see its own end cut off ...
    report = store.verify_chain(anchor=anchor)
    assert not report.ok and "missing" in report.problem  # ... the anchor kept elsewhere can


def test_removed_triggers_are_restored_on_open(store: AuditStore) -> None:
    _tamper(store.path)
    AuditStore(store.path).close()
    db = sqlite3.connect(store.path)
    with pytest.raises(sqlite3.IntegrityError):
        db.execute("DELETE FROM verdicts")
    db.close()


def test_records_survive_reopening_and_the_chain_continues(store: AuditStore) -> None:
    store.close()
    again = AuditStore(store.path)
    assert again.count() == 5 and again.get("A4") == verdict("A4", run=4)
    again.append(verdict("A5", run=5))
    assert again.verify_chain().ok and again.head()[0] == 6


def test_product_runs_come_from_the_record(store: AuditStore) -> None:
    store.append(verdict("B1", "REJECT", product="P2", run=0))
    assert store.product_runs("P2") == [(0, "REJECT")]
    assert [r for r, _ in store.product_runs("P1")] == [0, 1, 2, 3, 4]


def test_verify_command_exits_nonzero_on_a_broken_chain(store: AuditStore) -> None:
    cmd = [sys.executable, "-m", "aggregator.audit", "verify", str(store.path)]
    assert subprocess.run(cmd, capture_output=True, cwd=REPO).returncode == 0
    _tamper(store.path, "UPDATE verdicts SET prev_hash='x' WHERE seq=1")
    done = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO)
    assert done.returncode == 1 and '"first_bad_seq":1' in done.stdout


def test_fast_verdict_dict_is_exactly_asdict() -> None:
    v = verdict("A9", "REJECT", score=0.7)
    assert verdict_dict(v) == asdict(v)
    assert list(verdict_dict(v)) == list(asdict(v))  # same key order: same JSON text on the stream
