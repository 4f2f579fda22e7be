"""The audit store: every verdict, append-only and keyed-hash-chained, outside Redis.

DESIGN invariant 7: Redis is the queue, not the record. Each verdict is kept
with its scores, the thresholds applied, the model version and the timings in a
SQLite file (WAL, synchronous=FULL: a committed row survives a power cut, and
it never depended on Redis). Several aggregator processes on one host may share
the file; SQLite serialises their appends.

A record that cannot be cut quietly (21 CFR Part 11 §11.10(e): the record must
survive, and its loss must show):
- each row is chained to the previous one with an HMAC under a key kept outside
  the database (aggregator.audit_chain): an edited, deleted or re-hashed row
  breaks the chain for anyone who cannot read the key;
- after every append the head is checkpointed, MAC'd, in an anchor file kept
  where the database is not (aggregator.audit_anchor): a cut tail or a lost or
  replaced file no longer matches it;
- at start the whole active file is verified against the anchor, and the store
  refuses to open (AuditIntegrityError, the aggregator exits saying why) rather
  than start a new chain where one existed;
- a file deleted while the aggregator runs is restored from the open connection
  at the next append (CRITICAL in the log); one replaced by another is refused;
- rotation: at ``rotate_rows`` rows the active file is closed read-only as
  ``<stem>.seg<NNNNNN><suffix>`` and a new one continues the chain (its first
  row's prev_hash is the last row's hash, its seq the next one), so the chain
  verifies across all files: ``python -m aggregator.audit verify`` takes them all.
  Closed segments are never deleted by vialguard; archiving them is the site's
  retention procedure, and a missing segment shows as a gap.

Verify from a shell (read-only, never writes):
``python -m aggregator.audit verify var/audit/verdicts.sqlite3 [--expect-head SEQ:HASH]``.
"""
from __future__ import annotations

import json
import logging
import os
import sqlite3
import sys
import threading
import time
from pathlib import Path
from typing import Any

from aggregator.audit_anchor import AnchorError, Head, read_anchor, write_anchor
from aggregator.audit_chain import (
    GENESIS_HASH, INDEXED, SCHEME, TRIGGERS_PROBLEM, ChainReport, FileMeta, canonical_json, chain_hash, key_id,
    open_read_only, read_meta, verify_paths,
)
from aggregator.audit_files import (
    AuditIntegrityError, default_anchor, default_key_file, load_key, rotated_segments, segment_path,
)
from vialguard.messages import VerdictMessage

log = logging.getLogger(__name__)

__all__ = ["GENESIS_HASH", "AuditIntegrityError", "AuditStore", "ChainReport", "canonical_json", "default_anchor",
           "default_key_file", "rotated_segments", "verdict_dict"]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (name TEXT PRIMARY KEY, value TEXT NOT NULL);
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
CREATE TRIGGER IF NOT EXISTS meta_no_update BEFORE UPDATE ON meta
BEGIN SELECT RAISE(ABORT, 'the vialguard audit store is append-only: UPDATE refused'); END;
CREATE TRIGGER IF NOT EXISTS meta_no_delete BEFORE DELETE ON meta
BEGIN SELECT RAISE(ABORT, 'the vialguard audit store is append-only: DELETE refused'); END;
"""


def verdict_dict(verdict: VerdictMessage) -> dict[str, Any]:
    """``dataclasses.asdict(verdict)`` without its deep copies: the same dict, several times faster.

    asdict was the largest CPU cost per verdict (60 patches copied field by field).
    """
    data = dict(vars(verdict))
    data["patches"] = [dict(vars(p)) for p in verdict.patches]
    data["run_policy"] = dict(vars(verdict.run_policy))
    data["timings_ms"] = dict(verdict.timings_ms)
    return data


class AuditStore:
    """Append-only verdict record. ``append`` is idempotent on acquisition_id."""

    def __init__(self, path: Path, key_file: Path | None = None, anchor_path: Path | None = None,
                 rotate_rows: int = 0) -> None:
        self.path = Path(path)
        self.key_file = Path(key_file) if key_file else default_key_file(self.path)
        self.anchor_path = Path(anchor_path) if anchor_path else default_anchor(self.path)
        self.rotate_rows = rotate_rows
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        chain_exists = self.anchor_path.exists() or bool(rotated_segments(self.path)) or self._has_rows(self.path)
        self._key = load_key(self.key_file, may_create=not chain_exists)
        self._db, self.meta = self._open_checked()
        self._previous: sqlite3.Connection | None = None  # the last closed segment, for idempotency lookups
        self._identity = self._stat_identity()
        self._read_only = False

    # ---- opening -------------------------------------------------------------------------------

    @staticmethod
    def _has_rows(path: Path) -> bool:
        if not path.is_file():
            return False
        try:
            db = open_read_only(path)
            try:
                return db.execute("SELECT 1 FROM verdicts LIMIT 1").fetchone() is not None
            finally:
                db.close()
        except sqlite3.DatabaseError:
            return True  # unreadable: treat as an existing chain, the checks will say what is wrong

    def _connect(self, path: Path) -> sqlite3.Connection:
        db = sqlite3.connect(str(path), isolation_level=None, check_same_thread=False, timeout=30.0)
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=FULL")
        return db

    def _create_file(self, path: Path, meta: FileMeta) -> None:
        db = sqlite3.connect(str(path), isolation_level=None)
        try:
            db.executescript(_SCHEMA)
            db.executemany("INSERT INTO meta (name, value) VALUES (?, ?)", [
                ("scheme", SCHEME), ("segment", str(meta.segment)), ("first_seq", str(meta.first_seq)),
                ("genesis", meta.genesis), ("key_id", meta.key_id)])
        finally:
            db.close()

    def _refuse(self, problem: str) -> AuditIntegrityError:
        return AuditIntegrityError(
            f"audit store {self.path} (anchor {self.anchor_path}): {problem}. No verdict is recorded or given "
            f"until this is resolved: restore the file (and its closed segments) from backup, then run "
            f"`python -m aggregator.audit verify {self.path}`; to start a new chain knowingly, move the old "
            f"files and the anchor aside (keep them: they are the record)")

    def _open_checked(self) -> tuple[sqlite3.Connection, FileMeta]:
        try:
            anchored = read_anchor(self.anchor_path, self._key)
        except AnchorError as exc:
            raise self._refuse(str(exc)) from exc
        segments = rotated_segments(self.path)
        if not self.path.exists():
            if anchored is not None and (anchored.seq > 0 or anchored.segment > 1) or segments:
                raise self._refuse(
                    f"the active file is missing, but the anchor records a chain up to seq "
                    f"{anchored.seq if anchored else '?'} (segment {anchored.segment if anchored else '?'}); "
                    "its records were lost or moved")
            tmp = self.path.with_name(f".{self.path.name}.{os.getpid()}.{threading.get_ident()}.new")
            self._create_file(tmp, FileMeta(1, 1, GENESIS_HASH, key_id(self._key)))
            try:
                os.link(tmp, self.path)  # whole or not at all; a second aggregator starting now uses the first's
            except FileExistsError:
                pass
            finally:
                tmp.unlink()
        db = self._connect(self.path)
        meta = read_meta(db)
        if meta is None:
            db.close()
            raise self._refuse(f"the file is not an audit store of scheme {SCHEME} (written by an older vialguard "
                               "or another program)")
        report = verify_paths([self.path], self._key, None, continues=(meta.genesis, meta.first_seq),
                              triggers_fail=False)  # reported below, after what the anchor says
        if report.ok and segments:
            report = self._check_continuity(segments[-1], meta) or report
        if report.ok:
            report = self._check_against_anchor(anchored, meta, report) or report
        if report.ok and report.triggers_removed:
            report = ChainReport(False, report.rows, report.head_seq, report.head_hash, None,
                                 TRIGGERS_PROBLEM.format(report.triggers_removed))
        if not report.ok:
            db.close()
            raise self._refuse(report.problem)
        if anchored is None:
            if report.rows:
                db.close()
                raise self._refuse(f"the anchor is missing while the chain holds {report.rows} records: the head "
                                   "checkpoint was lost or removed, so a cut tail could not be seen")
            write_anchor(self.anchor_path, self._key, Head(meta.segment, meta.first_seq - 1, meta.genesis))
        return db, meta

    def _check_continuity(self, previous: Path, meta: FileMeta) -> ChainReport | None:
        db = open_read_only(previous)
        try:
            last = db.execute("SELECT seq, row_hash FROM verdicts ORDER BY seq DESC LIMIT 1").fetchone()
            prev_meta = read_meta(db)
        finally:
            db.close()
        head = (int(last[0]), str(last[1])) if last else ((prev_meta.first_seq - 1, prev_meta.genesis) if prev_meta
                                                           else (-1, ""))
        if (head[0] + 1, head[1]) != (meta.first_seq, meta.genesis):
            return ChainReport(False, 0, 0, GENESIS_HASH, meta.first_seq,
                               f"the active file does not continue the closed segment {previous.name}")
        return None

    def _check_against_anchor(self, anchored: Head | None, meta: FileMeta, report: ChainReport) -> ChainReport | None:
        if anchored is None:
            return None
        if anchored.segment > meta.segment:
            return ChainReport(False, report.rows, report.head_seq, report.head_hash, None,
                               f"the anchor records segment {anchored.segment} but the active file is segment "
                               f"{meta.segment}: an older file was put back")
        if anchored.segment < meta.segment:
            return None  # a rotation whose checkpoint was not written yet: continuity was checked above
        if report.head_seq < anchored.seq:
            return ChainReport(False, report.rows, report.head_seq, report.head_hash, report.head_seq + 1,
                               f"the chain ends at seq {report.head_seq} but the anchor records seq {anchored.seq}: "
                               f"{anchored.seq - report.head_seq} record(s) at the end were removed, or the file "
                               "was replaced")
        expected = meta.genesis if anchored.seq == meta.first_seq - 1 else self._hash_at(anchored.seq)
        if expected != anchored.row_hash:
            return ChainReport(False, report.rows, report.head_seq, report.head_hash, anchored.seq,
                               f"row {anchored.seq} has another hash than the anchored head: the chain was "
                               "rewritten from there on")
        return None

    def _hash_at(self, seq: int) -> str | None:
        db = open_read_only(self.path)
        try:
            row = db.execute("SELECT row_hash FROM verdicts WHERE seq=?", (seq,)).fetchone()
        finally:
            db.close()
        return None if row is None else str(row[0])

    def _stat_identity(self) -> tuple[int, int]:
        st = os.stat(self.path)
        return st.st_dev, st.st_ino

    @classmethod
    def open_read_only(cls, path: Path, key_file: Path | None = None, anchor_path: Path | None = None
                       ) -> "AuditStore":
        """A store for readers (the HMI): SQLite ``mode=ro``, no schema created, every write refused.

        ``get_record`` and ``head`` work as on the writer's store; ``verify_chain`` too when
        the reader is given the chain's key (the same key file as the aggregator's), so a
        reader's "the chain holds" means what ``python -m aggregator.audit verify`` means.
        Without the key, ``verify_chain`` says the chain cannot be checked here.
        """
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"no audit store at {path}")
        store = cls.__new__(cls)
        store.path = path
        store.key_file = Path(key_file) if key_file else default_key_file(path)
        store.anchor_path = Path(anchor_path) if anchor_path else default_anchor(path)
        store.rotate_rows = 0
        store._lock = threading.Lock()
        store._db = sqlite3.connect(f"file:{path.resolve()}?mode=ro", uri=True, isolation_level=None,
                                    check_same_thread=False, timeout=5.0)
        store.meta = read_meta(store._db) or FileMeta(1, 1, GENESIS_HASH, "")
        try:
            store._key = load_key(store.key_file, may_create=False)
        except (OSError, ValueError, AuditIntegrityError):
            store._key = b""
        store._previous = None
        store._read_only = True
        return store

    def close(self) -> None:
        with self._lock:
            self._db.close()
            if self._previous is not None:
                self._previous.close()

    # ---- the file under our feet ---------------------------------------------------------------

    def _check_file(self) -> None:
        """Before each append: the file we write must still be the one at ``path``."""
        try:
            identity = self._stat_identity()
        except FileNotFoundError:
            self._restore_deleted_file()
            return
        if identity == self._identity:
            return
        db = open_read_only(self.path)
        try:
            other = read_meta(db)
        finally:
            db.close()
        if other is not None and other.segment > self.meta.segment and other.key_id == self.meta.key_id:
            self._reopen()  # another aggregator rotated the shared file
            return
        raise AuditIntegrityError(f"audit store {self.path} was replaced by another file while in use; "
                                  "nothing is appended to it")

    def _restore_deleted_file(self) -> None:
        tmp = self.path.with_name(f".{self.path.name}.restore.tmp")
        target = sqlite3.connect(str(tmp))
        try:
            self._db.backup(target)
        finally:
            target.close()
        count = self._db.execute("SELECT COUNT(*) FROM verdicts").fetchone()[0]
        self._db.close()
        os.replace(tmp, self.path)
        self._db = self._connect(self.path)
        self._identity = self._stat_identity()
        log.critical("audit store %s was DELETED while the aggregator ran; its %d records were restored from the "
                     "open connection. Find out who deleted it.", self.path, count)

    def _reopen(self) -> None:
        self._db.close()
        self._db = self._connect(self.path)
        meta = read_meta(self._db)
        if meta is None:
            raise AuditIntegrityError(f"audit store {self.path} lost its meta table")
        self.meta, self._identity = meta, self._stat_identity()

    # ---- rotation ------------------------------------------------------------------------------

    def _rotate(self) -> None:
        """Close the active file as a read-only segment; a new file continues the chain (lock held)."""
        seq, head = self._head_locked()
        new_meta = FileMeta(self.meta.segment + 1, seq + 1, head, self.meta.key_id)
        tmp = self.path.with_name(f".{self.path.name}.rotate.tmp")
        tmp.unlink(missing_ok=True)
        self._create_file(tmp, new_meta)
        closed = segment_path(self.path, self.meta.segment)
        self._db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        self._db.close()
        os.rename(self.path, closed)
        os.replace(tmp, self.path)
        os.chmod(closed, 0o444)
        self._db = self._connect(self.path)
        self.meta, self._identity = new_meta, self._stat_identity()
        if self._previous is not None:
            self._previous.close()
        self._previous = open_read_only(closed)
        write_anchor(self.anchor_path, self._key, Head(new_meta.segment, seq, head))
        log.info("audit store %s: segment %d closed as %s at seq %d; segment %d continues the chain",
                 self.path, new_meta.segment - 1, closed.name, seq, new_meta.segment)

    # ---- appending and reading -----------------------------------------------------------------

    def append(self, verdict: VerdictMessage, context: dict[str, Any] | None = None) -> tuple[VerdictMessage, bool]:
        """Record a verdict; returns (the recorded verdict, True if this call added it).

        If the acquisition is already recorded, nothing is written and the stored
        verdict comes back: a redelivered or duplicated message never gets a
        second, possibly different, verdict.
        """
        if self._read_only:
            raise sqlite3.OperationalError("attempt to write a readonly database: this audit store was opened "
                                           "read-only (a reader, such as the HMI)")
        with self._lock:
            self._check_file()
            known = self._find_locked(verdict.acquisition_id)
            if known is not None:
                return _verdict_of(known), False
            if self.rotate_rows and self._count_locked() >= self.rotate_rows:
                self._rotate()
            self._db.execute("BEGIN IMMEDIATE")  # serialises appenders: prev_hash is read and used in one step
            try:
                row = self._db.execute(
                    "SELECT record_json FROM verdicts WHERE acquisition_id=?", (verdict.acquisition_id,)
                ).fetchone()
                if row is not None:
                    self._db.execute("ROLLBACK")
                    return _verdict_of(row[0]), False
                seq, prev_hash = self._head_locked()
                seq += 1
                record = {
                    "seq": seq, "acquisition_id": verdict.acquisition_id, "product_id": verdict.product_id,
                    "run_index": verdict.run_index, "decision": verdict.decision,
                    "model_version": verdict.model_version, "recorded_unix_ms": int(time.time() * 1000),
                    "verdict": verdict_dict(verdict), "context": context or {},
                }
                record_json = canonical_json(record)
                row_hash = chain_hash(self._key, prev_hash, record_json)
                self._db.execute(
                    "INSERT INTO verdicts (seq, acquisition_id, product_id, run_index, decision, model_version, "
                    "recorded_unix_ms, record_json, prev_hash, row_hash) VALUES (?,?,?,?,?,?,?,?,?,?)",
                    (seq, *(record[k] for k in INDEXED), record_json, prev_hash, row_hash),
                )
                self._db.execute("COMMIT")
            except BaseException:
                if self._db.in_transaction:
                    self._db.execute("ROLLBACK")
                raise
            write_anchor(self.anchor_path, self._key, Head(self.meta.segment, seq, row_hash))
        return verdict, True

    def _find_locked(self, acquisition_id: str) -> str | None:
        for db in (self._db, self._previous):
            if db is not None:
                row = db.execute("SELECT record_json FROM verdicts WHERE acquisition_id=?",
                                 (acquisition_id,)).fetchone()
                if row is not None:
                    return str(row[0])
        return None

    def get(self, acquisition_id: str) -> VerdictMessage | None:
        record = self.get_record(acquisition_id)
        return None if record is None else VerdictMessage.from_json(json.dumps(record["verdict"]))

    def get_record(self, acquisition_id: str) -> dict[str, Any] | None:
        """The whole audit record: verdict plus context (thresholds, why, where it came from)."""
        with self._lock:
            found = self._find_locked(acquisition_id)
        return None if found is None else json.loads(found)

    def product_runs(self, product_id: str) -> list[tuple[int, str]]:
        """(run_index, decision) of every recorded acquisition of a product, in record order."""
        with self._lock:
            rows: list[tuple[int, str]] = []
            for db in (self._previous, self._db):
                if db is not None:
                    rows += db.execute("SELECT run_index, decision FROM verdicts WHERE product_id=? ORDER BY seq",
                                       (product_id,)).fetchall()
        return [(int(r), str(d)) for r, d in rows]

    def _count_locked(self) -> int:
        return int(self._db.execute("SELECT COUNT(*) FROM verdicts").fetchone()[0])

    def count(self) -> int:
        """Records in the active file."""
        with self._lock:
            return self._count_locked()

    def _head_locked(self) -> tuple[int, str]:
        last = self._db.execute("SELECT seq, row_hash FROM verdicts ORDER BY seq DESC LIMIT 1").fetchone()
        return (int(last[0]), str(last[1])) if last else (self.meta.first_seq - 1, self.meta.genesis)

    def head(self) -> tuple[int, str]:
        """(last seq, its row_hash) of the whole chain, as the anchor records it."""
        with self._lock:
            return self._head_locked()

    def files(self) -> list[Path]:
        """Every file of the chain, in chain order: closed segments, then the active file."""
        return [*rotated_segments(self.path), self.path]

    def verify_chain(self, anchor: tuple[int, str] | None = None, use_anchor: bool = True) -> ChainReport:
        """Walk the whole chain read-only, against ``anchor`` or (by default) the anchor file's head."""
        if not self._key:
            return ChainReport(False, 0, 0, GENESIS_HASH, None,
                               f"the chain's key ({self.key_file}) is not readable here: run "
                               "`python -m aggregator.audit verify` where it is")
        expect = anchor
        if expect is None and use_anchor:
            try:
                head = read_anchor(self.anchor_path, self._key)
            except AnchorError as exc:
                return ChainReport(False, 0, 0, GENESIS_HASH, None, str(exc))
            expect = None if head is None else (head.seq, head.row_hash)
        return verify_paths(self.files(), self._key, expect)


def _verdict_of(record_json: str) -> VerdictMessage:
    return VerdictMessage.from_json(json.dumps(json.loads(record_json)["verdict"]))


def main(argv: list[str] | None = None) -> int:
    from aggregator.audit_cli import main as cli_main

    return cli_main(argv)


if __name__ == "__main__":
    sys.exit(main())
