"""Wiring of the aggregator process: config -> Redis client, audit store, thresholds -> loop."""
from __future__ import annotations

import logging
import sys
from collections.abc import Sequence

import redis

from aggregator.audit import AuditStore
from aggregator.config import AggregatorConfig, parse_args
from aggregator.consumer import Aggregator
from aggregator.shutdown import Shutdown
from aggregator.thresholds import ThresholdCache

log = logging.getLogger("aggregator")


def connect(config: AggregatorConfig) -> redis.Redis:
    """A client whose socket timeout outlives the XREADGROUP block, so a quiet stream is not an outage."""
    timeout_s = config.block_ms / 1000.0 + 5.0
    return redis.Redis.from_url(config.redis_url, socket_timeout=timeout_s, socket_connect_timeout=5.0,
                                health_check_interval=30)


def serve(config: AggregatorConfig, shutdown: Shutdown) -> Aggregator:
    """Run until ``shutdown`` is requested; returns the aggregator (for its counts)."""
    audit = AuditStore(config.audit_db)
    client = connect(config)
    aggregator = Aggregator(config, client, audit, ThresholdCache(config.model_repository))
    seq, head = audit.head()
    log.info("aggregator %s: redis %s, audit %s (head seq %d %s), models %s",
             aggregator.consumer, config.redis_url, config.audit_db, seq, head, config.model_repository)
    try:
        aggregator.run(shutdown)
    finally:
        seq, head = audit.head()
        log.info("aggregator %s stopped: %s; audit head seq %d %s",
                 aggregator.consumer, dict(aggregator.counts), seq, head)
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
