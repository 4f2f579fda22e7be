"""The preprocessor's side of the Redis contract in vialguard.messages.

Three steps per acquisition: look for a verdict already decided (replay) and
claim the acquisition_id; queue the scores on the scores stream; wait for the
verdict on the reply list. The claim is a short-lived marker that makes a retry
arriving while the first call is still in flight wait for the same verdict
instead of inferring and queuing a second time.

Replay integrity: the first call under an acquisition_id also fixes the digest
of what it sent (preprocessor.replay); a later call under that id with other
frames is told so instead of silently getting the first strip's verdict. The
digest is fixed in the same round trip as the claim (``SET NX GET``, Redis >= 7.0)
and dropped again with the claim when the first call fails before queuing, so a
corrected resend is inspected.
"""
from __future__ import annotations

import time
from dataclasses import dataclass

import redis
from redis.backoff import ExponentialWithJitterBackoff
from redis.retry import Retry

from preprocessor.deadline import Deadline
from vialguard.messages import (
    SCORES_STREAM,
    SCORES_STREAM_MAXLEN,
    ScoresMessage,
    reply_key,
    verdict_key,
)

# Waiting for the verdict is cut into slices of this length; between two
# slices the stored verdict is read, so a verdict whose reply another waiter
# took (a retry in flight, a second replica) is still found at once.
WAIT_SLICE_S = 0.25
# Once queued, the claim lives this long: a retry within it waits for the
# verdict in progress; after it (aggregator down for long) a retry queues again,
# which the idempotent aggregator absorbs.
QUEUED_CLAIM_TTL_MS = 60_000
REDIS_TIMEOUT_SLACK_S = 0.12  # how late Redis may end a BLPOP timeout (hz 10), plus a margin
POLL_INTERVAL_S = 0.01
SOCKET_TIMEOUT_S = 2.0  # longer than WAIT_SLICE_S, so a blocking read never trips it


def inflight_key(acquisition_id: str) -> str:
    """Set while some preprocessor call is inspecting this acquisition (preprocessor-private)."""
    return f"vialguard:inflight:{acquisition_id}"


def digest_key(acquisition_id: str) -> str:
    """The digest of the frames first sent under this acquisition_id (preprocessor-private)."""
    return f"vialguard:digest:{acquisition_id}"


class VerdictTimeout(Exception):
    """The verdict did not come back before the deadline."""


class ClaimLost(Exception):
    """The call this one was waiting on gave up before queuing the scores."""


@dataclass(frozen=True)
class Claim:
    stored_verdict: bytes | None  # the verdict already decided: replay it
    claimed: bool                  # False: another call is inspecting this id; wait for it
    first_digest: str | None = None  # the digest fixed by an earlier call; None: this call fixed it

    def same_frames(self, digest: str) -> bool:
        return self.first_digest is None or self.first_digest == digest


def connect(url: str) -> redis.Redis:
    """A client with short timeouts: Redis being down must fail a call, not hang it.

    Two quick retries ride over a dropped connection (a Redis restart) within
    the slot; more would only spend the caller's deadline.
    """
    return redis.Redis.from_url(
        url,
        retry=Retry(ExponentialWithJitterBackoff(cap=0.05, base=0.005), retries=2),
        socket_timeout=SOCKET_TIMEOUT_S,
        socket_connect_timeout=1.0,
        health_check_interval=10,
        protocol=2,  # RESP2 reply shapes (XREAD as lists), whatever the client library defaults to
    )


def claim(client: redis.Redis, acquisition_id: str, deadline: Deadline, digest: str = "",
          digest_ttl_s: int = 7 * 24 * 3600) -> Claim:
    """One round trip: the stored verdict, the digest fixed first (fixing ours if none), the in-flight claim."""
    ttl_ms = max(1, int(deadline.remaining() * 1000) + 1000)
    pipe = client.pipeline(transaction=False)
    pipe.get(verdict_key(acquisition_id))
    if digest:
        pipe.set(digest_key(acquisition_id), digest.encode(), nx=True, get=True, ex=digest_ttl_s)
    pipe.set(inflight_key(acquisition_id), b"1", nx=True, px=ttl_ms)
    replies = pipe.execute()
    stored, claimed = replies[0], replies[-1]
    first = replies[1] if digest else None
    return Claim(stored_verdict=stored, claimed=bool(claimed),
                 first_digest=None if first is None else first.decode(errors="replace"))


def release(client: redis.Redis, acquisition_id: str, drop_digest: bool = False) -> None:
    """Drop the claim of a call that failed before queuing, so a retry inspects afresh.

    ``drop_digest``: this call fixed the digest and queued nothing, so a corrected
    resend under the same id is a first call again.
    """
    try:
        keys = [inflight_key(acquisition_id)] + ([digest_key(acquisition_id)] if drop_digest else [])
        client.delete(*keys)
    except redis.RedisError:
        pass  # the claim expires on its own within the deadline


def enqueue(client: redis.Redis, message: ScoresMessage) -> bytes:
    """XADD the scores (trimmed approximately) and keep the claim while the verdict is made."""
    pipe = client.pipeline(transaction=False)
    pipe.xadd(SCORES_STREAM, message.to_fields(), maxlen=SCORES_STREAM_MAXLEN, approximate=True)
    pipe.pexpire(inflight_key(message.acquisition_id), QUEUED_CLAIM_TTL_MS)
    entry_id, _ = pipe.execute()
    return entry_id


def _stored_or_lost(client: redis.Redis, acquisition_id: str, watch_claim: bool) -> bytes | None:
    if not watch_claim:
        return client.get(verdict_key(acquisition_id))
    pipe = client.pipeline(transaction=False)
    pipe.get(verdict_key(acquisition_id))
    pipe.exists(inflight_key(acquisition_id))
    found, claimed = pipe.execute()
    if not found and not claimed:
        raise ClaimLost(acquisition_id)
    return found


def wait_for_verdict(client: redis.Redis, acquisition_id: str, deadline: Deadline, watch_claim: bool = False) -> bytes:
    """The verdict JSON, from the reply list or the stored verdict; VerdictTimeout at the deadline.

    ``watch_claim``: this call waits on another call's inspection; ClaimLost
    when that call released its claim without queuing (it failed).

    A push wakes BLPOP at once, but Redis ends a blocking timeout only on its
    next cron tick (up to 1/hz = 100 ms late), so the last stretch before the
    deadline is polled instead: the caller gets our answer before its own
    deadline fires.
    """
    reply = reply_key(acquisition_id)
    while True:
        remaining = deadline.remaining()
        if remaining <= 0:
            raise VerdictTimeout(acquisition_id)
        if remaining > REDIS_TIMEOUT_SLACK_S + 0.001:
            popped = client.blpop([reply], timeout=min(remaining - REDIS_TIMEOUT_SLACK_S, WAIT_SLICE_S))
            found = popped[1] if popped else _stored_or_lost(client, acquisition_id, watch_claim)
        else:
            found = client.lpop(reply) or _stored_or_lost(client, acquisition_id, watch_claim)
            if not found:
                time.sleep(min(POLL_INTERVAL_S, deadline.remaining()))
        if found:
            return found
