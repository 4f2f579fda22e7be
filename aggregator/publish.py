"""The Redis side of one decided acquisition, done in one atomic step.

One Lua script (Redis runs it whole or not at all, and nothing interleaves):
- ``SET verdict_key NX`` with a TTL: the idempotency record. Only the call that
  creates it also records the run in the product's hash and appends the verdict
  to the verdicts stream, so a duplicate or redelivered message never puts a
  second verdict on the stream;
- the reply list of the waiting preprocessor gets the stored verdict (once:
  not pushed again while an unread one is there), with a TTL so that a reply
  nobody waits for any more disappears;
- ``XACK`` of the scores entry, in the same step: an entry is acknowledged if
  and only if its verdict is published.
"""
from __future__ import annotations

import json
from typing import Any

import redis

from aggregator.audit import verdict_dict
from vialguard.decision import Decision
from vialguard.messages import (
    CONSUMER_GROUP, SCORES_STREAM, VERDICTS_STREAM, VERDICTS_STREAM_MAXLEN, VerdictMessage,
    product_key, reply_key, verdict_key,
)

DEAD_LETTER_STREAM = "vialguard:scores:dead"
DEAD_LETTER_MAXLEN = 10_000

# KEYS: verdict, product, reply, verdicts stream, scores stream
# ARGV: verdict json, verdict ttl, run index, run decision, product ttl, reply ttl,
#       verdicts maxlen, acquisition id, group, entry id (may be empty)
_PUBLISH_LUA = """
local created = redis.call('SET', KEYS[1], ARGV[1], 'NX', 'EX', ARGV[2])
if created then
  if redis.call('HGET', KEYS[2], ARGV[3]) ~= 'REJECT' then
    redis.call('HSET', KEYS[2], ARGV[3], ARGV[4])
  end
  redis.call('EXPIRE', KEYS[2], ARGV[5])
  redis.call('XADD', KEYS[4], 'MAXLEN', '~', ARGV[7], '*', 'acquisition_id', ARGV[8], 'data', ARGV[1])
end
local stored = redis.call('GET', KEYS[1])
if redis.call('LLEN', KEYS[3]) == 0 then
  redis.call('RPUSH', KEYS[3], stored)
end
redis.call('EXPIRE', KEYS[3], ARGV[6])
if ARGV[10] ~= '' then
  redis.call('XACK', KEYS[5], ARGV[9], ARGV[10])
end
if created then return 1 else return 0 end
"""


class Publisher:
    """Redis writes of the aggregator; every method is one round trip."""

    def __init__(self, client: redis.Redis, reply_ttl_s: int, verdict_ttl_s: int, product_ttl_s: int) -> None:
        self.client = client
        self.reply_ttl_s, self.verdict_ttl_s, self.product_ttl_s = reply_ttl_s, verdict_ttl_s, product_ttl_s
        self._script = client.register_script(_PUBLISH_LUA)

    def publish(self, verdict: VerdictMessage, entry_id: str = "") -> bool:
        """Publish (or re-publish) a recorded verdict and ack its entry; True if it was new to Redis."""
        keys = [verdict_key(verdict.acquisition_id), product_key(verdict.product_id),
                reply_key(verdict.acquisition_id), VERDICTS_STREAM, SCORES_STREAM]
        args = [json.dumps(verdict_dict(verdict)), self.verdict_ttl_s, verdict.run_index, verdict.decision, self.product_ttl_s,
                self.reply_ttl_s, VERDICTS_STREAM_MAXLEN, verdict.acquisition_id, CONSUMER_GROUP, entry_id]
        return bool(self._script(keys=keys, args=args))

    def known_state(self, acquisition_id: str, product_id: str) -> tuple[VerdictMessage | None, list[tuple[int, str]]]:
        """The verdict already in Redis for this acquisition (if any) and the product's runs."""
        pipe = self.client.pipeline(transaction=False)
        pipe.get(verdict_key(acquisition_id))
        pipe.hgetall(product_key(product_id))
        raw, runs = pipe.execute()
        verdict = VerdictMessage.from_json(raw) if raw else None
        parsed = []
        for run, decision in runs.items():
            try:
                parsed.append((int(run), _text(decision)))
            except ValueError:
                continue  # not a run index: never counted
        return verdict, [(r, d) for r, d in parsed if d in (Decision.ACCEPT.value, Decision.REJECT.value)]

    def dead_letter(self, entry_id: str, fields: dict[Any, Any] | None, reason: str) -> None:
        """Set an unjudgeable entry aside with the reason, and ack it, in one transaction."""
        copy = {_text(k): _text(v) for k, v in (fields or {}).items()}
        pipe = self.client.pipeline(transaction=True)
        pipe.xadd(DEAD_LETTER_STREAM, {"entry_id": entry_id, "reason": reason, "fields": json.dumps(copy)},
                  maxlen=DEAD_LETTER_MAXLEN, approximate=True)
        pipe.xack(SCORES_STREAM, CONSUMER_GROUP, entry_id)
        pipe.execute()


def _text(value: Any) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)
