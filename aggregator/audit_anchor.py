"""The head checkpoint of the audit chain, kept where the database is not.

A chain that holds still cannot tell that its last rows were cut off, or that
the whole file was deleted and a new one begun. The anchor can: after every
append the aggregator records (segment, seq, row_hash) of the head in a small
JSON file on another volume, MAC'd with the audit key so that it cannot be
rewritten to match a shortened chain without the key. It is replaced whole
(temporary file, fsync, rename, fsync of the directory), so a crash leaves the
previous checkpoint or the new one, never half of one. Appends from several
processes are ordered by a lock file; the anchor only moves forward.

A crash between a commit and its checkpoint leaves the anchor one row behind
the store, which is consistent (the store holds the anchored row). Only that
last row could then be cut unnoticed: the window is one fsync long.
"""
from __future__ import annotations

import fcntl
import hashlib
import hmac
import json
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from aggregator.audit_chain import GENESIS_HASH, canonical_json


class AnchorError(Exception):
    """The anchor file is unreadable or its MAC does not hold (rewritten without the key)."""


@dataclass(frozen=True)
class Head:
    segment: int
    seq: int
    row_hash: str
    recorded_unix_ms: int = 0

    @classmethod
    def genesis(cls) -> "Head":
        return cls(1, 0, GENESIS_HASH)


def _mac(key: bytes, head: Head) -> str:
    fields = {k: v for k, v in asdict(head).items() if k != "recorded_unix_ms"}
    return hmac.new(key, ("anchor\0" + canonical_json(fields)).encode(), hashlib.sha256).hexdigest()


def read_anchor(path: Path, key: bytes) -> Head | None:
    """The recorded head, None when there is no anchor file; AnchorError when it does not hold."""
    path = Path(path)
    if not path.exists():
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        head = Head(int(data["segment"]), int(data["seq"]), str(data["row_hash"]), int(data.get("recorded_unix_ms", 0)))
        mac = str(data["mac"])
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise AnchorError(f"the audit anchor {path} cannot be read ({exc})") from exc
    if not hmac.compare_digest(mac, _mac(key, head)):
        raise AnchorError(f"the audit anchor {path} does not hold under the audit key: it was edited, or "
                          "the key is not the one the chain was written with")
    return head


def write_anchor(path: Path, key: bytes, head: Head) -> None:
    """Record ``head`` if it is ahead of the recorded one (several writers may race)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path.with_name(path.name + ".lock"), "a+b") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            current = read_anchor(path, key)
        except AnchorError:
            current = None  # reported at start and by verify; a newer head is what to keep now
        if current is not None and (current.segment, current.seq) >= (head.segment, head.seq):
            return
        stamped = Head(head.segment, head.seq, head.row_hash, int(time.time() * 1000))
        body = canonical_json({**asdict(stamped), "mac": _mac(key, stamped)})
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        with open(tmp, "w", encoding="utf-8") as handle:
            handle.write(body + "\n")
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
        directory = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(directory)
        finally:
            os.close(directory)
