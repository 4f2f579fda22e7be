"""The consumer-group loop: read scores, judge each acquisition once, record, publish, ack.

DESIGN invariant 5, exactly one verdict per acquisition, is built from:
- at-least-once delivery: an entry stays pending in the group until its verdict
  is published (the ack is in the same Lua step as the publish); entries of a
  consumer that died are taken over with XAUTOCLAIM once idle ``claim_idle_ms``;
  a restarted consumer with a fixed name first re-reads its own pending entries;
- idempotence on acquisition_id: the audit store (the record) and then the
  Redis verdict key are consulted before deciding; a known acquisition gets its
  recorded verdict again, never a new one, and its run is not counted twice.

Order per entry: decide -> append to the audit store -> publish + ack. A crash
between the last two leaves a recorded, unpublished verdict; the redelivered
entry finds it in the audit store and publishes exactly that one.
"""
from __future__ import annotations

import logging
import sqlite3
import time
from collections import Counter
from typing import Any

import redis

from aggregator.audit import AuditStore
from aggregator.config import AggregatorConfig
from aggregator.decide import decide, merge_runs
from aggregator.intake import PoisonMessage, acquisition_id_of, parse_scores
from aggregator.metrics import AggregatorMetrics
from aggregator.publish import DEAD_LETTER_STREAM, Publisher
from aggregator.shutdown import Shutdown
from aggregator.thresholds import ThresholdCache
from vialguard.messages import CONSUMER_GROUP, HEARTBEAT_TTL_MS, SCORES_STREAM, ScoresMessage, heartbeat_key

log = logging.getLogger(__name__)

Entry = tuple[Any, dict[Any, Any] | None]
HEARTBEAT_EVERY_S = 1.0


def ensure_group(client: redis.Redis) -> None:
    """Create the consumer group from the start of the stream: a first start judges the backlog."""
    try:
        client.xgroup_create(SCORES_STREAM, CONSUMER_GROUP, id="0", mkstream=True)
        log.info("created consumer group %s on %s", CONSUMER_GROUP, SCORES_STREAM)
    except redis.ResponseError as exc:
        if "BUSYGROUP" not in str(exc):
            raise


class Aggregator:
    def __init__(self, config: AggregatorConfig, client: redis.Redis, audit: AuditStore,
                 thresholds: ThresholdCache, metrics: AggregatorMetrics | None = None) -> None:
        self.config, self.client, self.audit, self.thresholds = config, client, audit, thresholds
        self.metrics = metrics if metrics is not None else AggregatorMetrics()
        self.consumer = config.consumer_name
        self.publisher = Publisher(client, config.reply_ttl_s, config.verdict_ttl_s, config.product_ttl_s)
        self.counts: Counter[str] = Counter()
        self._setup_needed = True
        self._read_own_pending = True
        self._claim_cursor = "0-0"
        self._next_claim = 0.0
        self._next_beat = 0.0

    # ---- one entry -------------------------------------------------------------------------

    def handle(self, entry_id: str, fields: dict[Any, Any] | None) -> str:
        """Judge one entry; returns what happened: decided, republished, dead-lettered, vanished."""
        if not fields:  # a pending entry deleted from the stream reads back empty
            log.error("scores entry %s was trimmed from the stream before it was judged", entry_id)
            self.client.xack(SCORES_STREAM, CONSUMER_GROUP, entry_id)
            return "vanished"
        try:
            msg = parse_scores(fields)
        except PoisonMessage as exc:
            return self._dead_letter(entry_id, fields, str(exc))
        try:
            return self._judge(entry_id, msg)
        except (redis.ConnectionError, redis.TimeoutError, sqlite3.Error, OSError):
            raise  # the entry stays pending and is judged again once Redis / the disk is back
        except redis.ResponseError as exc:
            if "WRONGTYPE" not in str(exc):
                raise  # NOGROUP, READONLY, LOADING...: the server's state, not this message's fault
            log.exception("Redis refused the verdict of acquisition %s", msg.acquisition_id)
            return self._dead_letter(entry_id, fields, f"Redis error: {exc}")
        except Exception as exc:  # a bug must cost one acquisition, never the line
            log.exception("cannot judge acquisition %s", msg.acquisition_id)
            return self._dead_letter(entry_id, fields, f"internal error: {exc!r}")

    def _judge(self, entry_id: str, msg: ScoresMessage) -> str:
        recorded = self.audit.get(msg.acquisition_id)
        if recorded is not None:
            self.publisher.publish(recorded, entry_id)
            return "republished"
        in_redis, redis_runs = self.publisher.known_state(msg.acquisition_id, msg.product_id)
        if in_redis is not None:
            # Decided by an aggregator with another audit file: keep our record complete, publish that one.
            recorded, _ = self.audit.append(in_redis, {"source": "verdict key in Redis", "scores_entry_id": entry_id,
                                                       "consumer": self.consumer})
            self.publisher.publish(recorded, entry_id)
            return "republished"
        runs = merge_runs(redis_runs, self.audit.product_runs(msg.product_id))
        lookup = self.thresholds.lookup(msg.model_name, msg.model_version)
        result = decide(msg, lookup, runs)
        cal = lookup.calibration
        context = {
            "source": "decided",
            "thresholds": result.thresholds,
            "threshold_problem": result.problem,
            "calibration": None if cal is None else {
                "profile": cal.profile, "serving": cal.serving, "recipe_id": cal.recipe_id,
                "recipe_digest": cal.recipe_digest, "training_data_digest": cal.training_data_digest,
                "created_utc": cal.created_utc},
            "product_runs": {str(k): v for k, v in sorted(result.runs.items())},
            "recipe_id": msg.recipe_id,
            "camera_timestamp_ns": msg.camera_timestamp_ns,
            "received_unix_ms": msg.received_unix_ms,
            "scores_entry_id": entry_id,
            "consumer": self.consumer,
        }
        recorded, created = self.audit.append(result.verdict, context)  # the record first
        self.publisher.publish(recorded, entry_id)
        if created:
            self.metrics.observe_verdict(recorded)
        if recorded.decision == "REJECT":
            log.info("acquisition %s REJECT (product %s run %d, strip %.4f, margin %+.4f, %s v%d/%s)",
                     recorded.acquisition_id, recorded.product_id, recorded.run_index, recorded.strip_score,
                     recorded.worst_margin, recorded.model_name, recorded.model_version, recorded.threshold_set)
        return "decided" if created else "republished"

    def _dead_letter(self, entry_id: str, fields: dict[Any, Any] | None, reason: str) -> str:
        log.error("scores entry %s (acquisition '%s') set aside on %s: %s",
                  entry_id, acquisition_id_of(fields), DEAD_LETTER_STREAM, reason)
        self.publisher.dead_letter(entry_id, fields, reason)
        return "dead-lettered"

    # ---- reading ---------------------------------------------------------------------------

    def _read(self, start: str, block_ms: int | None) -> list[Entry]:
        reply = self.client.xreadgroup(CONSUMER_GROUP, self.consumer, {SCORES_STREAM: start},
                                       count=self.config.batch_count, block=block_ms)
        return list(reply[0][1]) if reply else []

    def _reclaim(self) -> list[Entry]:
        """Entries another consumer read and left idle too long: it died or hangs; they are ours now."""
        now = time.monotonic()
        if now < self._next_claim and self._claim_cursor == "0-0":
            return []
        cursor, entries, *_ = self.client.xautoclaim(
            SCORES_STREAM, CONSUMER_GROUP, self.consumer, self.config.claim_idle_ms,
            start_id=self._claim_cursor, count=self.config.batch_count)
        self._claim_cursor = cursor.decode() if isinstance(cursor, bytes) else str(cursor)
        if self._claim_cursor == "0-0":
            self._next_claim = now + self.config.claim_idle_ms / 2000.0
        if entries:
            log.warning("reclaimed %d scores entries left pending by a dead or stuck consumer", len(entries))
            self.counts["reclaimed"] += len(entries)
        return list(entries)

    def poll(self) -> int:
        """One round: own pending, then reclaimed, then new entries; the whole batch in hand is finished."""
        if self._setup_needed:
            ensure_group(self.client)
            self._setup_needed = False
        entries: list[Entry] = []
        if self._read_own_pending:
            entries = self._read("0", None)
            self._read_own_pending = bool(entries)
        if not entries:
            entries = self._reclaim()
        if not entries:
            entries = self._read(">", self.config.block_ms)
        for entry_id, fields in entries:
            eid = entry_id.decode() if isinstance(entry_id, bytes) else str(entry_id)
            started = time.perf_counter()
            outcome = self.handle(eid, fields)
            self.counts[outcome] += 1
            self.metrics.observe_entry(outcome, time.perf_counter() - started)
        self._beat()
        return len(entries)

    def _beat(self) -> None:
        """Tell the health probe this loop turns: on Redis < 7.2 XINFO's idle only counts reads that
        returned entries, so an idle, healthy consumer looked dead (vialguard_stack.probes)."""
        now = time.monotonic()
        if now >= self._next_beat:
            self.client.set(heartbeat_key(self.consumer), b"1", px=HEARTBEAT_TTL_MS)
            self._next_beat = now + HEARTBEAT_EVERY_S

    def leave_group(self) -> None:
        """After a clean stop: remove this consumer's name from the group if it holds no entries.

        Names are hostname-pid, so every restart adds one; only an empty one is
        removed (XGROUP DELCONSUMER drops the consumer's pending entries with it).
        """
        try:
            if not self.client.xpending_range(SCORES_STREAM, CONSUMER_GROUP, min="-", max="+", count=1,
                                              consumername=self.consumer):
                self.client.xgroup_delconsumer(SCORES_STREAM, CONSUMER_GROUP, self.consumer)
        except redis.RedisError as exc:
            log.info("consumer %s left in the group (%s); harmless", self.consumer, exc)

    def run(self, shutdown: Shutdown) -> None:
        """Until shutdown: poll; ride out Redis or disk outages with backoff, losing nothing."""
        backoff = 0.1
        while not shutdown.requested:
            try:
                self.poll()
                backoff = 0.1
                continue
            except (redis.ConnectionError, redis.TimeoutError) as exc:
                log.warning("Redis unavailable (%s); retrying in %.1f s", exc, backoff)
                self._setup_needed = True
            except redis.ResponseError as exc:
                if "NOGROUP" in str(exc):
                    log.warning("consumer group is gone (Redis restarted without its data?); recreating it")
                else:
                    log.error("Redis refused a command (%s); retrying in %.1f s", exc, backoff)
                self._setup_needed = True
            except (sqlite3.Error, OSError) as exc:
                log.error("audit store %s unavailable (%s): nothing is acknowledged until it is back; "
                          "retrying in %.1f s", self.audit.path, exc, backoff)
            self._read_own_pending = True
            shutdown.sleep(backoff)
            backoff = min(backoff * 2, self.config.reconnect_max_s)
