"""Wiring of the aggregator process: config -> Redis client, audit store, thresholds -> loop."""
from __future__ import annotations

import logging
import sqlite3
import sys
from collections.abc import Sequence
from pathlib import Path

import redis

from aggregator.audit import AuditIntegrityError, AuditStore
from aggregator.config import AggregatorConfig, parse_args
from aggregator.consumer import Aggregator
from aggregator.metrics import AggregatorMetrics, RedisQueueCollector
from aggregator.shutdown import Shutdown
from aggregator.thresholds import ThresholdCache
from vialguard.metrics import serve_metrics
from vialguard.redis_url import display_redis_url

log = logging.getLogger("aggregator")


def connect(config: AggregatorConfig) -> redis.Redis:
    """A client whose socket timeout outlives the XREADGROUP block, so a quiet stream is not an outage."""
    timeout_s = config.block_ms / 1000.0 + 5.0
    return redis.Redis.from_url(config.redis_url, socket_timeout=timeout_s, socket_connect_timeout=5.0,
                                health_check_interval=30, protocol=2)  # RESP2 reply shapes, whatever the default


def serve(config: AggregatorConfig, shutdown: Shutdown) -> Aggregator:
    """Run until ``shutdown`` is requested; returns the aggregator (for its counts)."""
    try:
        audit = AuditStore(config.audit_db, Path(config.audit_key_file) if config.audit_key_file else None,
                           Path(config.audit_anchor) if config.audit_anchor else None, config.audit_rotate_rows)
    except AuditIntegrityError as exc:
        log.critical("the audit record does not hold, so the aggregator does not start: %s", exc)
        raise SystemExit(1) from exc
    except (sqlite3.Error, OSError, ValueError) as exc:
        log.critical("cannot open the audit store %s: %s. No verdict is given without its record; "
                     "check the volume and its permissions.", config.audit_db, exc)
        raise SystemExit(1) from exc
    client = connect(config)
    if not config.model_repository.is_dir():
        log.error("model repository %s does not exist: every acquisition will be REJECTED "
                  "(no thresholds) until it is mounted", config.model_repository)
    metrics = AggregatorMetrics()
    metrics.registry.register(RedisQueueCollector(config.redis_url))
    stop_metrics = serve_metrics(metrics.registry, config.metrics_host, config.metrics_port, "aggregator")
    aggregator = Aggregator(config, client, audit, ThresholdCache(config.model_repository), metrics)
    seq, head = audit.head()
    log.info("aggregator %s: redis %s, audit %s (chain verified, head seq %d %s, anchored in %s), models %s",
             aggregator.consumer, display_redis_url(config.redis_url), config.audit_db, seq, head, audit.anchor_path,
             config.model_repository)
    try:
        aggregator.run(shutdown)
        aggregator.leave_group()
    finally:
        seq, head = audit.head()
        log.info("aggregator %s stopped: %s; audit head seq %d %s",
                 aggregator.consumer, dict(aggregator.counts), seq, head)
        stop_metrics()
        audit.close()
        client.close()
    return aggregator


def main(argv: Sequence[str] | None = None) -> int:
    try:
        config = parse_args(argv)
    except ValueError as exc:
        print(f"aggregator: {exc}", file=sys.stderr)
        return 2
    logging.basicConfig(level=config.log_level.upper(), stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    shutdown = Shutdown()
    shutdown.install()
    serve(config, shutdown)
    return 0
