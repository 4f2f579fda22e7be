"""The HMI reads the audit store and cannot write it; its chain status is the aggregator's own check."""
from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from aggregator.audit import AuditStore
from hmi.audit_reader import AuditReader, AuditUnavailable
from hmi.verdicts import from_audit
from tests.unit.test_audit import verdict
from vialguard.messages import PatchVerdict
from vialguard.recipe import load_recipe


@pytest.fixture()
def audit_path(tmp_path: Path) -> Path:
    path = tmp_path / "audit" / "verdicts.sqlite3"
    store = AuditStore(path)
    store.append(verdict("A1", "ACCEPT"), {"source": "decided"})
    store.append(verdict("A2", "REJECT", run=1), {"source": "decided"})
    store.close()
    return path


def test_reader_finds_a_record_and_the_chain_holds(audit_path: Path) -> None:
    reader = AuditReader(audit_path)
    record = reader.record("A2")
    assert record is not None and record["verdict"]["decision"] == "REJECT" and record["seq"] == 2
    assert reader.record("nope") is None
    chain = reader.chain()
    assert chain.ok and chain.rows == 2 and chain.head_seq == 2
    assert reader.first_verdict_ms(record["model_version"]) is not None
    assert [r["acquisition_id"] for r in reader.recent(5)] == ["A2", "A1"]


def test_the_readers_connection_refuses_every_write(audit_path: Path) -> None:
    store = AuditStore.open_read_only(audit_path)
    with pytest.raises(sqlite3.OperationalError, match="readonly"):
        store.append(verdict("A3"))
    with pytest.raises(sqlite3.OperationalError, match="readonly"):
        store._db.execute("CREATE TABLE x (y)")
    store.close()
    assert AuditStore(audit_path).count() == 2


def test_a_tampered_row_shows_as_a_broken_chain(audit_path: Path) -> None:
    db = sqlite3.connect(audit_path)
    db.execute("DROP TRIGGER verdicts_no_update")
    db.execute("UPDATE verdicts SET record_json = replace(record_json, 'REJECT', 'ACCEPT') WHERE seq = 2")
    db.commit()
    db.close()
    chain = AuditReader(audit_path).chain()
    assert not chain.ok and chain.first_bad_seq == 2


def test_a_missing_store_is_reported_not_created(tmp_path: Path) -> None:
    missing = tmp_path / "none.sqlite3"
    with pytest.raises(AuditUnavailable, match="none.sqlite3"):
        AuditReader(missing).record("A1")
    assert not missing.exists()


def test_an_audit_verdict_names_frames_as_the_camera_does(audit_path: Path) -> None:
    record = AuditReader(audit_path).record("A1")
    record["verdict"]["patches"] = [vars(PatchVerdict(2, 4, 3, 0.5, 0.4, True))]
    view = from_audit(record, load_recipe())
    assert (view.patches[0].frame, view.patches[0].vial, view.patches[0].region_id) == (15, 4, "R3")


def test_without_the_chains_key_the_reader_says_where_to_verify(audit_path: Path, tmp_path: Path) -> None:
    reader = AuditReader(audit_path, key_file=tmp_path / "no-such.key")
    assert reader.record("A2") is not None  # records still read
    chain = reader.chain()
    assert not chain.ok and "python -m aggregator.audit verify" in chain.problem
