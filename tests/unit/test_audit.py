"""The audit store is append-only, HMAC-chained, anchored, idempotent and outlives the process."""
from __future__ import annotations

import sqlite3
import subprocess
import sys
from dataclasses import asdict
from pathlib import Path

import pytest

from aggregator.audit import GENESIS_HASH, AuditIntegrityError, AuditStore, rotated_segments, verdict_dict
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


def _restore_triggers(path: Path) -> None:
    """The tamperer puts the triggers back, so that only the chain and the anchor can tell."""
    from aggregator.audit import _SCHEMA

    db = sqlite3.connect(path)
    db.executescript(_SCHEMA)
    db.close()


def test_a_removed_tail_is_found_against_the_anchor(store: AuditStore) -> None:
    _tamper(store.path, "DELETE FROM verdicts WHERE seq=5")
    _restore_triggers(store.path)
    assert store.verify_chain(use_anchor=False).ok  # a chain alone cannot see its own end cut off ...
    report = store.verify_chain()
    assert not report.ok and "removed" in report.problem  # ... the anchor kept elsewhere can
    store.close()
    with pytest.raises(AuditIntegrityError, match="ends at seq 4 but the anchor records seq 5"):
        AuditStore(store.path)  # and the aggregator refuses to start on it


def test_an_explicit_expected_head_catches_a_cut_tail_too(store: AuditStore) -> None:
    head = store.head()
    _tamper(store.path, "DELETE FROM verdicts WHERE seq=5")
    _restore_triggers(store.path)
    assert not store.verify_chain(anchor=head).ok


def test_a_row_changed_and_the_chain_rehashed_to_the_head_is_found(store: AuditStore) -> None:
    """What broke the sha256 chain: edit a record, recompute every hash after it, put the triggers back."""
    import hashlib

    db = sqlite3.connect(store.path)
    db.execute("DROP TRIGGER verdicts_no_update")
    rows = db.execute("SELECT seq, record_json FROM verdicts ORDER BY seq").fetchall()
    prev = GENESIS_HASH
    for seq, record_json in rows:
        if seq == 2:
            record_json = record_json.replace('"decision":"ACCEPT"', '"decision":"REJECT"')
        digest = hashlib.sha256((prev + record_json).encode()).hexdigest()
        db.execute("UPDATE verdicts SET record_json=?, prev_hash=?, row_hash=?, decision=json_extract(?, '$.decision')"
                   " WHERE seq=?", (record_json, prev, digest, record_json, seq))
        prev = digest
    db.commit()
    db.close()
    _restore_triggers(store.path)
    report = store.verify_chain()
    assert not report.ok and report.first_bad_seq == 1 and "re-hashed" in report.problem


def test_removed_triggers_are_reported_not_silently_restored(store: AuditStore) -> None:
    _tamper(store.path)
    before = store.path.read_bytes()
    report = store.verify_chain()
    assert not report.ok and "triggers" in report.problem
    assert store.path.read_bytes() == before  # verify wrote nothing
    store.close()
    with pytest.raises(AuditIntegrityError, match="triggers"):
        AuditStore(store.path)


def test_a_database_deleted_while_open_is_restored_at_the_next_append(store: AuditStore) -> None:
    for sidecar in (store.path, store.path.with_name(store.path.name + "-wal"),
                    store.path.with_name(store.path.name + "-shm")):
        sidecar.unlink(missing_ok=True)
    store.append(verdict("A5", run=5))
    assert store.count() == 6 and store.get("A0") == verdict("A0")
    assert store.verify_chain().ok
    store.close()
    reopened = AuditStore(store.path)
    assert reopened.count() == 6 and reopened.head()[0] == 6


def test_a_lost_database_is_refused_at_start_not_restarted_at_seq_1(store: AuditStore) -> None:
    store.close()
    for sidecar in (store.path, store.path.with_name(store.path.name + "-wal"),
                    store.path.with_name(store.path.name + "-shm")):
        sidecar.unlink(missing_ok=True)
    with pytest.raises(AuditIntegrityError, match="missing, but the anchor records a chain up to seq 5"):
        AuditStore(store.path)
    assert not store.path.exists()  # no new chain was begun


def test_a_database_replaced_by_a_fresh_one_is_refused(store: AuditStore, tmp_path: Path) -> None:
    store.close()
    other = AuditStore(tmp_path / "other" / "verdicts.sqlite3", key_file=store.key_file)
    other.append(verdict("X0"))
    other.close()
    for sidecar in (store.path.with_name(store.path.name + "-wal"), store.path.with_name(store.path.name + "-shm")):
        sidecar.unlink(missing_ok=True)
    (tmp_path / "other" / "verdicts.sqlite3").replace(store.path)
    with pytest.raises(AuditIntegrityError, match="anchor records seq 5"):
        AuditStore(store.path)


def test_an_edited_anchor_or_a_missing_key_is_refused(store: AuditStore) -> None:
    store.close()
    anchor = store.anchor_path.read_text()
    store.anchor_path.write_text(anchor.replace('"seq":5', '"seq":4'))
    with pytest.raises(AuditIntegrityError, match="does not hold under the audit key"):
        AuditStore(store.path)
    store.anchor_path.write_text(anchor)
    store.key_file.rename(store.key_file.with_name("elsewhere.key"))
    with pytest.raises(AuditIntegrityError, match="key .* is missing but an audit chain exists"):
        AuditStore(store.path)


def test_a_missing_anchor_with_records_is_refused(store: AuditStore) -> None:
    store.close()
    store.anchor_path.unlink()
    with pytest.raises(AuditIntegrityError, match="anchor is missing"):
        AuditStore(store.path)


def test_rotation_keeps_one_chain_across_files(tmp_path: Path) -> None:
    path = tmp_path / "audit" / "verdicts.sqlite3"
    rotating = AuditStore(path, rotate_rows=3)
    for i in range(8):
        rotating.append(verdict(f"R{i}", run=i))
    segments = rotated_segments(path)
    assert len(segments) == 2 and rotating.count() == 2 and rotating.head()[0] == 8
    report = rotating.verify_chain()
    assert report.ok and report.rows == 8 and report.files == 3
    assert not rotating.append(verdict("R5", run=5))[1]  # still idempotent across the last rotation
    rotating.close()
    assert AuditStore(path, rotate_rows=3).head()[0] == 8  # reopens on the continued chain
    segments[0].chmod(0o644)
    segments[0].unlink()  # an archived segment lost
    assert not AuditStore.verify_chain(AuditStore(path, rotate_rows=3)).ok


def test_verify_command_is_read_only_and_checks_an_expected_head(store: AuditStore) -> None:
    head = store.head()
    store.close()
    cmd = [sys.executable, "-m", "aggregator.audit", "verify", str(store.path)]
    files = sorted(store.path.parent.iterdir())
    stamps = {f: (f.stat().st_mtime_ns, f.read_bytes()) for f in files}
    done = subprocess.run([*cmd, "--expect-head", f"{head[0]}:{head[1]}"], capture_output=True, text=True, cwd=REPO)
    assert done.returncode == 0, done.stdout + done.stderr
    assert sorted(store.path.parent.iterdir()) == files
    assert {f: (f.stat().st_mtime_ns, f.read_bytes()) for f in files} == stamps  # not a byte written
    done = subprocess.run([*cmd, "--expect-head", f"{head[0] + 3}:{head[1]}"], capture_output=True, text=True,
                          cwd=REPO)
    assert done.returncode == 1 and "were removed" in done.stdout
    head_cmd = subprocess.run([sys.executable, "-m", "aggregator.audit", "head", str(store.path)],
                              capture_output=True, text=True, cwd=REPO)
    assert head_cmd.stdout.strip() == f"{head[0]}:{head[1]}"


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
    store.close()
    cmd = [sys.executable, "-m", "aggregator.audit", "verify", str(store.path)]
    assert subprocess.run(cmd, capture_output=True, cwd=REPO).returncode == 0
    _tamper(store.path, "UPDATE verdicts SET prev_hash='x' WHERE seq=1")
    done = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO)
    assert done.returncode == 1 and '"first_bad_seq":1' in done.stdout


def test_fast_verdict_dict_is_exactly_asdict() -> None:
    v = verdict("A9", "REJECT", score=0.7)
    assert verdict_dict(v) == asdict(v)
    assert list(verdict_dict(v)) == list(asdict(v))  # same key order: same JSON text on the stream
