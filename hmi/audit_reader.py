"""The audit store, opened read-only: one acquisition's record, the chain's status, a version's first verdict.

Opened with SQLite's ``mode=ro`` (aggregator.audit.AuditStore.open_read_only): the
HMI cannot write, even by mistake. The chain is checked with the aggregator's own
``verify_chain``, so the HMI's "chain holds" means what ``python -m aggregator.audit
verify`` means.
"""
from __future__ import annotations

import json
import sqlite3
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from aggregator.audit import AuditStore

T = TypeVar("T")


class AuditUnavailable(Exception):
    """The audit store cannot be read; the message says where and why."""


@dataclass(frozen=True)
class ChainStatus:
    ok: bool
    rows: int
    head_seq: int
    head_hash: str
    first_bad_seq: int | None
    problem: str


class AuditReader:
    def __init__(self, path: Path, key_file: Path | None = None, anchor: Path | None = None) -> None:
        self._path = Path(path)
        self._key_file = Path(key_file) if key_file and str(key_file) not in ("", ".") else None
        self._anchor = Path(anchor) if anchor and str(anchor) not in ("", ".") else None
        self._store: AuditStore | None = None
        self._lock = threading.Lock()
        self._first_seen: dict[int, int] = {}

    @property
    def path(self) -> Path:
        return self._path

    def _call(self, what: str, fn: Callable[[AuditStore], T]) -> T:
        with self._lock:
            if self._store is None:
                try:
                    self._store = AuditStore.open_read_only(self._path, self._key_file, self._anchor)
                except (OSError, sqlite3.Error) as exc:
                    raise AuditUnavailable(f"audit store {self._path} cannot be opened: {exc}") from exc
            store = self._store
        try:
            return fn(store)
        except sqlite3.Error as exc:
            with self._lock:
                self._store = None  # reopened next time (the file was replaced, the disk is back)
            raise AuditUnavailable(f"audit store {self._path}: {what} failed: {exc}") from exc

    def record(self, acquisition_id: str) -> dict[str, Any] | None:
        return self._call("reading a record", lambda s: s.get_record(acquisition_id))

    def chain(self) -> ChainStatus:
        def verify(s: AuditStore) -> ChainStatus:
            report = s.verify_chain()
            seq, head = s.head()
            return ChainStatus(report.ok, report.rows, seq, head, report.first_bad_seq, report.problem)
        return self._call("verifying the chain", verify)

    def _query(self, what: str, sql: str, args: tuple[Any, ...]) -> list[tuple[Any, ...]]:
        def run(s: AuditStore) -> list[tuple[Any, ...]]:
            with s._lock:
                return s._db.execute(sql, args).fetchall()
        return self._call(what, run)

    def first_verdict_ms(self, version: int) -> int | None:
        """When this line first recorded a verdict of ``version``: when it went into service here."""
        if version not in self._first_seen:
            rows = self._query("finding a version's first verdict",
                               "SELECT MIN(recorded_unix_ms) FROM verdicts WHERE model_version=?", (version,))
            if not rows or rows[0][0] is None:
                return None
            self._first_seen[version] = int(rows[0][0])  # it never changes once there
        return self._first_seen[version]

    def recent(self, limit: int) -> list[dict[str, Any]]:
        """The newest ``limit`` records' ids and decisions (to pick one for the lookup)."""
        rows = self._query("listing records", "SELECT seq, acquisition_id, product_id, decision, model_version "
                           "FROM verdicts ORDER BY seq DESC LIMIT ?", (limit,))
        return [dict(zip(("seq", "acquisition_id", "product_id", "decision", "model_version"), r)) for r in rows]


def pretty(record: dict[str, Any]) -> str:
    return json.dumps(record, indent=2, sort_keys=True)
