"""Where an audit chain's files are, and its key: names of segments, anchor and key; creating the key.

The key is created only where no chain exists yet (no anchor, no segment, no row):
a key missing beside an existing chain is a refusal, never a new key.
"""
from __future__ import annotations

import logging
import os
import secrets
import sqlite3
import threading
from pathlib import Path

log = logging.getLogger("aggregator.audit")

KEY_BYTES = 32


class AuditIntegrityError(sqlite3.DatabaseError):
    """The record does not hold (cut, rewritten, lost, wrong key): nothing is appended until a person looks.

    A DatabaseError, so the consumer treats it as the audit store being unavailable:
    entries stay pending, no verdict is given without its record.
    """


def default_key_file(path: Path) -> Path:
    return Path(path).with_name(Path(path).stem + ".key")


def default_anchor(path: Path) -> Path:
    return Path(path).with_name(Path(path).stem + ".head.json")


def segment_path(path: Path, segment: int) -> Path:
    path = Path(path)
    return path.with_name(f"{path.stem}.seg{segment:06d}{path.suffix}")


def rotated_segments(path: Path) -> list[Path]:
    """Closed segments of the chain whose active file is ``path``, oldest first."""
    path = Path(path)
    return sorted(path.parent.glob(f"{path.stem}.seg[0-9][0-9][0-9][0-9][0-9][0-9]{path.suffix}"))


def load_key(key_file: Path, may_create: bool) -> bytes:
    """The audit key (hex) from its file; a new one only where no chain exists yet."""
    key_file = Path(key_file)
    if key_file.exists():
        key = bytes.fromhex(key_file.read_text().strip())
        if len(key) < 16:
            raise AuditIntegrityError(f"the audit key in {key_file} is shorter than 16 bytes")
        return key
    if not may_create:
        raise AuditIntegrityError(
            f"the audit key {key_file} is missing but an audit chain exists: without it the chain cannot be "
            "verified or continued. Restore the key from its backup")
    key_file.parent.mkdir(parents=True, exist_ok=True)
    tmp = key_file.with_name(f".{key_file.name}.{os.getpid()}.{threading.get_ident()}.new")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(secrets.token_hex(KEY_BYTES) + "\n")
        handle.flush()
        os.fsync(handle.fileno())
    try:
        os.link(tmp, key_file)  # two aggregators starting at once end up with the same key
    except FileExistsError:
        pass
    finally:
        tmp.unlink()
    log.warning("created a new audit key %s for a new audit chain: back it up apart from the database "
                "(without it the chain cannot be verified)", key_file)
    return bytes.fromhex(key_file.read_text().strip())
