"""The audit store: every verdict, append-only and hash-chained, outside Redis.

DESIGN invariant 7: Redis is the queue, not the record. Each verdict is kept
with its scores, the thresholds applied, the model version and the timings in a
SQLite file (WAL, synchronous=FULL: a committed row survives a power cut, and
it never depended on Redis). Several aggregator processes on one host may share
the file; SQLite serialises their appends.

Tamper evidence: row n stores ``row_hash = sha256(prev_hash + record_json)``
where ``prev_hash`` is row n-1's hash and ``record_json`` the canonical JSON of
the whole record, its sequence number included. Triggers refuse UPDATE and
DELETE; whoever goes round them (drops the triggers, edits the file) breaks the
chain at the first row touched, and ``verify_chain`` names it. A chain rewritten
from the start is only caught against a head recorded elsewhere: the service
logs ``head()`` at start and stop, and ``verify_chain(anchor=...)`` checks one.

Verify from a shell: ``python -m aggregator.audit verify var/audit/verdicts.sqlite3``.
"""
from __future__ import annotations

import hashlib
import json
import logging
import sqlite3
import sys
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from vialguard.messages import VerdictMessage

log = logging.getLogger(__name__)

GENESIS_HASH = "0" * 64
_TRIGGERS = ("verdicts_no_update", "verdicts_no_delete")
_SCHEMA = """
CREATE TABLE IF NOT EXISTS verdicts (
    seq              INTEGER PRIMARY KEY,
    acquisition_id   TEXT NOT NULL UNIQUE,
    product_id       TEXT NOT NULL,
    run_index        INTEGER NOT NULL,
    decision         TEXT NOT NULL,
    model_version    INTEGER NOT NULL,
    recorded_unix_ms INTEGER NOT NULL,
    record_json      TEXT NOT NULL,
    prev_hash        TEXT NOT NULL,
    row_hash         TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS verdicts_by_product ON verdicts(product_id);
CREATE TRIGGER IF NOT EXISTS verdicts_no_update BEFORE UPDATE ON verdicts
BEGIN SELECT RAISE(ABORT, 'the vialguard audit store is append-only: UPDATE refused'); END;
CREATE TRIGGER IF NOT EXISTS verdicts_no_delete BEFORE DELETE ON verdicts
BEGIN SELECT RAISE(ABORT, 'the vialguard audit store is append-only: DELETE refused'); END;
"""
_INDEXED = ("acquisition_id", "product_id", "run_index", "decision", "model_version", "recorded_unix_ms")


def canonical_json(obj: Any) -> str:
    """One text per value: sorted keys, no spaces, so the hash does not depend on dict order."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=True)


def verdict_dict(verdict: VerdictMessage) -> dict[str, Any]:
    """``dataclasses.asdict(verdict)`` without its deep copies: the same dict, several times faster.

    asdict was the largest CPU cost per verdict (60 patches copied field by field).
    """
    data = dict(vars(verdict))
    data["patches"] = [dict(vars(p)) for p in verdict.patches]
    data["run_policy"] = dict(vars(verdict.run_policy))
    data["timings_ms"] = dict(verdict.timings_ms)
    return data


def chain_hash(prev_hash: str, record_json: str) -> str:
    return hashlib.sha256((prev_hash + record_json).encode("ascii")).hexdigest()


@dataclass(frozen=True)
class ChainReport:
    ok: bool
    rows: int
    head_hash: str
    first_bad_seq: int | None = None
    problem: str = ""


class AuditStore:
    """Append-only verdict record. ``append`` is idempotent on acquisition_id."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._db = sqlite3.connect(str(self.path), isolation_level=None, check_same_thread=False, timeout=30.0)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        present = {r[0] for r in self._db.execute("SELECT name FROM sqlite_master WHERE type='trigger'")}
        has_table = self._db.execute("SELECT 1 FROM sqlite_master WHERE name='verdicts'").fetchone()
        if has_table and not set(_TRIGGERS) <= present:
            log.critical("audit store %s: append-only triggers %s were REMOVED; restoring them. "
                         "Run verify_chain: rows may have been altered.", self.path, sorted(set(_TRIGGERS) - present))
        self._db.executescript(_SCHEMA)

    @classmethod
    def open_read_only(cls, path: Path) -> "AuditStore":
        """A store for readers (the HMI): SQLite ``mode=ro``, no schema created, every write refused.

        ``get_record``, ``head`` and ``verify_chain`` work as on the writer's store, so a
        reader's "the chain holds" means what ``python -m aggregator.audit verify`` means.
        """
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"no audit store at {path}")
        store = cls.__new__(cls)
        store.path = path
        store._lock = threading.Lock()
        store._db = sqlite3.connect(f"file:{path.resolve()}?mode=ro", uri=True, isolation_level=None,
                                    check_same_thread=False, timeout=5.0)
        return store

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def append(self, verdict: VerdictMessage, context: dict[str, Any] | None = None) -> tuple[VerdictMessage, bool]:
        """Record a verdict; returns (the recorded verdict, True if this call added it).

        If the acquisition is already recorded, nothing is written and the stored
        verdict comes back: a redelivered or duplicated message never gets a
        second, possibly different, verdict.
        """
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")  # serialises appenders: prev_hash is read and used in one step
            try:
                row = self._db.execute(
                    "SELECT record_json FROM verdicts WHERE acquisition_id=?", (verdict.acquisition_id,)
                ).fetchone()
                if row is not None:
                    self._db.execute("ROLLBACK")
                    return _verdict_of(row[0]), False
                last = self._db.execute("SELECT seq, row_hash FROM verdicts ORDER BY seq DESC LIMIT 1").fetchone()
                seq, prev_hash = (last[0] + 1, last[1]) if last else (1, GENESIS_HASH)
                record = {
                    "seq": seq, "acquisition_id": verdict.acquisition_id, "product_id": verdict.product_id,
                    "run_index": verdict.run_index, "decision": verdict.decision,
                    "model_version": verdict.model_version, "recorded_unix_ms": int(time.time() * 1000),
                    "verdict": verdict_dict(verdict), "context": context or {},
                }
                record_json = canonical_json(record)
                self._db.execute(
                    "INSERT INTO verdicts (seq, acquisition_id, product_id, run_index, decision, model_version, "
                    "recorded_unix_ms, record_json, prev_hash, row_hash) VALUES (?,?,?,?,?,?,?,?,?,?)",
                    (seq, *(record[k] for k in _INDEXED), record_json, prev_hash, chain_hash(prev_hash, record_json)),
                )
                self._db.execute("COMMIT")
            except BaseException:
                if self._db.in_transaction:
                    self._db.execute("ROLLBACK")
                raise
        return verdict, True

    def get(self, acquisition_id: str) -> VerdictMessage | None:
        record = self.get_record(acquisition_id)
        return None if record is None else VerdictMessage.from_json(json.dumps(record["verdict"]))

    def get_record(self, acquisition_id: str) -> dict[str, Any] | None:
        """The whole audit record: verdict plus context (thresholds, why, where it came from)."""
        with self._lock:
            row = self._db.execute(
                "SELECT record_json FROM verdicts WHERE acquisition_id=?", (acquisition_id,)
            ).fetchone()
        return None if row is None else json.loads(row[0])

    def product_runs(self, product_id: str) -> list[tuple[int, str]]:
        """(run_index, decision) of every recorded acquisition of a product, in record order."""
        with self._lock:
            rows = self._db.execute(
                "SELECT run_index, decision FROM verdicts WHERE product_id=? ORDER BY seq", (product_id,)
            ).fetchall()
        return [(int(r), str(d)) for r, d in rows]

    def count(self) -> int:
        with self._lock:
            return int(self._db.execute("SELECT COUNT(*) FROM verdicts").fetchone()[0])

    def head(self) -> tuple[int, str]:
        """(last seq, its row_hash): record it elsewhere to catch a chain rewritten from the start."""
        with self._lock:
            last = self._db.execute("SELECT seq, row_hash FROM verdicts ORDER BY seq DESC LIMIT 1").fetchone()
        return (int(last[0]), str(last[1])) if last else (0, GENESIS_HASH)

    def verify_chain(self, anchor: tuple[int, str] | None = None) -> ChainReport:
        """Walk the chain from the first row; report the first row that does not hold."""
        with self._lock:
            rows = self._db.execute(
                f"SELECT seq, {', '.join(_INDEXED)}, record_json, prev_hash, row_hash FROM verdicts ORDER BY seq"
            ).fetchall()
        expected_prev, expected_seq, anchor_seen = GENESIS_HASH, 1, anchor is None or anchor[0] == 0
        for seq, *cols, record_json, prev_hash, row_hash in rows:
            problem = _row_problem(seq, cols, record_json, prev_hash, row_hash, expected_prev, expected_seq)
            if problem:
                return ChainReport(False, len(rows), expected_prev, seq, problem)
            if anchor is not None and seq == anchor[0]:
                if row_hash != anchor[1]:
                    return ChainReport(False, len(rows), row_hash, seq, "row hash differs from the recorded anchor")
                anchor_seen = True
            expected_prev, expected_seq = row_hash, seq + 1
        if not anchor_seen:
            return ChainReport(False, len(rows), expected_prev, None, f"anchored row {anchor[0]} is missing")
        return ChainReport(True, len(rows), expected_prev)


def _row_problem(
    seq: int, cols: list[Any], record_json: str, prev_hash: str, row_hash: str, expected_prev: str, expected_seq: int
) -> str:
    if seq != expected_seq:
        return f"sequence jumps from {expected_seq - 1} to {seq}: rows were removed"
    if prev_hash != expected_prev:
        return "prev_hash does not match the previous row's hash"
    if chain_hash(prev_hash, record_json) != row_hash:
        return "row_hash does not match the record: the record was altered"
    try:
        record = json.loads(record_json)
    except json.JSONDecodeError:
        return "record is not JSON"
    if record.get("seq") != seq or [record.get(k) for k in _INDEXED] != list(cols):
        return "indexed columns differ from the hashed record"
    return ""


def _verdict_of(record_json: str) -> VerdictMessage:
    return VerdictMessage.from_json(json.dumps(json.loads(record_json)["verdict"]))


def main(argv: list[str] | None = None) -> int:
    """``python -m aggregator.audit verify PATH``: exit 0 when the chain holds, 1 when it does not."""
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 2 or args[0] != "verify":
        print("usage: python -m aggregator.audit verify PATH", file=sys.stderr)
        return 2
    if not Path(args[1]).is_file():
        print(f"no audit store at {args[1]}", file=sys.stderr)
        return 2
    report = AuditStore(Path(args[1])).verify_chain()
    print(canonical_json(asdict(report)))
    return 0 if report.ok else 1


if __name__ == "__main__":
    sys.exit(main())
