"""The audit chain's rules, and the read-only check of one or several audit files.

Row n of an audit file stores ``row_hash = HMAC-SHA256(key, prev_hash + record_json)``,
``prev_hash`` being row n-1's hash (for a file's first row: the head of the file
before it, or the genesis hash). The key lives outside the database, so whoever
can write the file but not read the key cannot re-hash an edited chain: a
rewritten row, a rewritten-and-rechained tail, a row deleted in the middle all
fail here. Cutting the tail, or replacing the whole file with a shorter or empty
one, leaves a chain that holds; that is caught against the head checkpoint kept
elsewhere (aggregator.audit_anchor) or an expected head given by hand.

Nothing here writes: files are opened read-only (``mode=ro``), so ``verify`` can
be run on a production store, or on a copy, without changing a byte.
"""
from __future__ import annotations

import hashlib
import hmac
import json
import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

GENESIS_HASH = "0" * 64
SCHEME = "hmac-sha256-v1"
TRIGGERS = ("verdicts_no_update", "verdicts_no_delete", "meta_no_update", "meta_no_delete")
INDEXED = ("acquisition_id", "product_id", "run_index", "decision", "model_version", "recorded_unix_ms")


def canonical_json(obj: Any) -> str:
    """One text per value: sorted keys, no spaces, so the hash does not depend on dict order."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=True)


def chain_hash(key: bytes, prev_hash: str, record_json: str) -> str:
    return hmac.new(key, (prev_hash + record_json).encode("ascii"), hashlib.sha256).hexdigest()


def key_id(key: bytes) -> str:
    """Names a key without revealing it, so a wrong key is reported as such, not as tampering."""
    return hashlib.sha256(b"vialguard-audit-key-id\0" + key).hexdigest()[:16]


@dataclass(frozen=True)
class ChainReport:
    ok: bool
    rows: int
    head_seq: int
    head_hash: str
    first_bad_seq: int | None = None
    problem: str = ""
    files: int = 1
    triggers_removed: str = ""  # tamper evidence even where the chain holds: ok is then False


TRIGGERS_PROBLEM = "append-only triggers {} were removed: rows may have been changed through them"


@dataclass(frozen=True)
class FileMeta:
    segment: int
    first_seq: int
    genesis: str
    key_id: str


def read_meta(db: sqlite3.Connection) -> FileMeta | None:
    try:
        rows = dict(db.execute("SELECT name, value FROM meta").fetchall())
    except sqlite3.DatabaseError:
        return None
    if rows.get("scheme") != SCHEME:
        return None
    return FileMeta(int(rows["segment"]), int(rows["first_seq"]), rows["genesis"], rows["key_id"])


def open_read_only(path: Path) -> sqlite3.Connection:
    """A connection that cannot write. A file closed cleanly (no -wal beside it) is opened
    immutable, so not even a -wal or -shm file appears; one in use by an aggregator is read
    through its WAL (read-only: SQLite then only takes its share of the writer's -shm)."""
    path = Path(path).resolve()
    if not path.is_file():
        raise FileNotFoundError(f"no audit file at {path}")
    in_use = path.with_name(path.name + "-wal").exists()
    return sqlite3.connect(f"file:{path}?{'mode=ro' if in_use else 'immutable=1'}", uri=True, timeout=30.0,
                           check_same_thread=False)


def row_problem(key: bytes, seq: int, cols: Sequence[Any], record_json: str, prev_hash: str, row_hash: str,
                expected_prev: str, expected_seq: int) -> str:
    if seq != expected_seq:
        return f"sequence jumps from {expected_seq - 1} to {seq}: rows were removed"
    if prev_hash != expected_prev:
        return "prev_hash does not match the previous row's hash"
    if not hmac.compare_digest(chain_hash(key, prev_hash, record_json), row_hash):
        return "row_hash does not match the record under the audit key: the record was altered or re-hashed"
    try:
        record = json.loads(record_json)
    except json.JSONDecodeError:
        return "record is not JSON"
    if record.get("seq") != seq or [record.get(k) for k in INDEXED] != list(cols):
        return "indexed columns differ from the hashed record"
    return ""


def verify_file(db: sqlite3.Connection, key: bytes, expected_prev: str | None = None,
                expected_first: int | None = None) -> ChainReport:
    """Walk one file's chain; ``expected_*`` tie it to the file before it (rotation)."""
    meta = read_meta(db)
    if meta is None:
        return ChainReport(False, 0, 0, GENESIS_HASH, None,
                           f"not a vialguard audit file of scheme {SCHEME} (no meta table, or another scheme)")
    if meta.key_id != key_id(key):
        return ChainReport(False, 0, 0, GENESIS_HASH, None,
                           f"the audit key given is not the key this file was written with "
                           f"(key id {key_id(key)}, file's {meta.key_id})")
    if expected_prev is not None and (meta.genesis != expected_prev or meta.first_seq != expected_first):
        if expected_first == 1:
            return ChainReport(False, 0, 0, GENESIS_HASH, 1,
                               f"the chain's first file is segment {meta.segment}, starting at seq {meta.first_seq}: "
                               f"the segments before it (seq 1..{meta.first_seq - 1}) are missing")
        return ChainReport(False, 0, 0, GENESIS_HASH, meta.first_seq,
                           f"segment {meta.segment} does not continue the previous file: it starts at seq "
                           f"{meta.first_seq} after {meta.genesis[:16]}..., expected seq {expected_first} after "
                           f"{(expected_prev or '')[:16]}...")
    present = {r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type='trigger'")}
    missing = sorted(set(TRIGGERS) - present)
    rows = db.execute(
        f"SELECT seq, {', '.join(INDEXED)}, record_json, prev_hash, row_hash FROM verdicts ORDER BY seq").fetchall()
    prev, expected_seq = meta.genesis, meta.first_seq
    for seq, *cols, record_json, prev_hash, row_hash in rows:
        problem = row_problem(key, seq, cols, record_json, prev_hash, row_hash, prev, expected_seq)
        if problem:
            return ChainReport(False, len(rows), expected_seq - 1, prev, seq, problem)
        prev, expected_seq = row_hash, seq + 1
    return ChainReport(True, len(rows), expected_seq - 1, prev, triggers_removed=", ".join(missing))


def verify_paths(paths: Sequence[Path], key: bytes, expect_head: tuple[int, str] | None = None,
                 continues: tuple[str, int] = (GENESIS_HASH, 1), triggers_fail: bool = True) -> ChainReport:
    """Verify files in chain order (rotated segments first, the active file last); read-only.

    ``expect_head``: (seq, row_hash) recorded elsewhere; the chain must hold that
    row with that hash. A chain that ends before it was cut; one that has another
    hash there was rewritten. ``continues``: (prev hash, first seq) the first file
    must start from; the genesis by default, so a missing first segment shows.
    """
    # The first file must begin the chain: a missing first segment shows as a gap, like any other.
    total, report, removed = 0, ChainReport(True, 0, 0, GENESIS_HASH), []
    prev, first = continues
    hashes_at_expected: str | None = None
    for path in paths:
        db = open_read_only(Path(path))
        try:
            report = verify_file(db, key, prev, first)
            if expect_head is not None and report.ok and expect_head[0] > 0:
                row = db.execute("SELECT row_hash FROM verdicts WHERE seq=?", (expect_head[0],)).fetchone()
                hashes_at_expected = row[0] if row else hashes_at_expected
        finally:
            db.close()
        total += report.rows
        removed += [f"{Path(path).name}: {report.triggers_removed}"] if report.triggers_removed else []
        if not report.ok:
            return ChainReport(False, total, report.head_seq, report.head_hash, report.first_bad_seq,
                               f"{path}: {report.problem}", len(paths))
        prev, first = report.head_hash, report.head_seq + 1
    if expect_head is not None:
        seq, expected = expect_head
        if report.head_seq < seq:
            return ChainReport(False, total, report.head_seq, report.head_hash, report.head_seq + 1,
                               f"the chain ends at seq {report.head_seq} but its recorded head is seq {seq}: "
                               f"{seq - report.head_seq} record(s) at the end were removed, or the file was "
                               "replaced", len(paths))
        if seq > 0 and hashes_at_expected != expected:
            return ChainReport(False, total, report.head_seq, report.head_hash, seq,
                               f"row {seq} has another hash than the recorded head: the chain was rewritten "
                               "from there on", len(paths))
        if seq == 0 and expected != GENESIS_HASH:
            return ChainReport(False, total, report.head_seq, report.head_hash, None,
                               "the recorded head is malformed", len(paths))
    if removed and not triggers_fail:
        return ChainReport(True, total, report.head_seq, report.head_hash, files=len(paths),
                           triggers_removed="; ".join(removed))
    if removed:
        return ChainReport(False, total, report.head_seq, report.head_hash, None,
                           TRIGGERS_PROBLEM.format("; ".join(removed)) + "; the chain itself holds", len(paths),
                           "; ".join(removed))
    return ChainReport(True, total, report.head_seq, report.head_hash, files=len(paths))
