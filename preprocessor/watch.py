"""Following the verdicts stream, for WatchVerdicts.

A client that reconnects passes the id of the last verdict it received and
misses nothing; a new client starts after the newest verdict at the time it
connected (resolved once, so nothing decided between two reads is skipped, as
re-reading from '$' would).
"""
from __future__ import annotations

import logging
import re
from collections.abc import Callable, Iterator

import redis

from vialguard.messages import VERDICTS_STREAM, VerdictMessage

log = logging.getLogger(__name__)

STREAM_ID = re.compile(r"^\d+(-\d+)?$")
BLOCK_MS = 500      # also how soon a cancelled watcher notices
BATCH_COUNT = 100


def newest_id(client: redis.Redis) -> str:
    """Id of the newest verdict now, or 0-0 for an empty stream."""
    newest = client.xrevrange(VERDICTS_STREAM, count=1)
    return newest[0][0].decode() if newest else "0-0"


def parse_entry(entry_id: str, fields: dict[bytes, bytes]) -> VerdictMessage | None:
    """The verdict in an entry's ``data`` field; None (logged) for an entry that is not one."""
    try:
        return VerdictMessage.from_json(fields[b"data"])
    except (KeyError, ValueError, TypeError) as exc:
        log.warning("verdicts stream entry %s is not a verdict message, skipped: %s", entry_id, exc)
        return None


def follow(
    client: redis.Redis,
    after_id: str,
    keep_going: Callable[[], bool],
) -> Iterator[tuple[str, VerdictMessage]]:
    """(stream id, verdict) pairs after ``after_id`` (see newest_id), until keep_going() is False.

    Raises redis.RedisError when Redis goes away; the caller reports the last
    id delivered so its client can resume there.
    """
    last = after_id
    while keep_going():
        batches = client.xread({VERDICTS_STREAM: last}, count=BATCH_COUNT, block=BLOCK_MS)
        for _stream, entries in batches or []:
            for raw_id, fields in entries:
                last = raw_id.decode()
                verdict = parse_entry(last, fields)
                if verdict is not None:
                    yield last, verdict
