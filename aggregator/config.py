"""Every setting of the aggregator with its default, in one place.

Precedence: command line > environment (docker compose) > the defaults below.
Durations carry their unit in the name, so a compose file cannot mix up
seconds and milliseconds.
"""
from __future__ import annotations

import os
import socket
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from vialguard.service_config import settings_from_args, settings_from_env


def default_consumer_name() -> str:
    """hostname-pid: unique per process, so two replicas never share pending entries."""
    return f"{socket.gethostname()}-{os.getpid()}"


@dataclass(frozen=True)
class AggregatorConfig:
    redis_url: str = "redis://localhost:6379/0"
    consumer: str = ""                       # empty -> default_consumer_name()
    model_repository: Path = Path("model_repository")
    audit_db: Path = Path("var/audit/verdicts.sqlite3")
    # The chain's HMAC key and its head checkpoint live outside the database (aggregator.audit);
    # empty: beside it (<audit_db stem>.key / .head.json). On the line, put each on its own volume.
    audit_key_file: str = ""
    audit_anchor: str = ""
    audit_rotate_rows: int = 1_000_000       # a new segment file continues the chain after this many rows
    block_ms: int = 1000                     # XREADGROUP BLOCK: also the worst-case SIGTERM latency
    claim_idle_ms: int = 5000                # a pending entry idle this long belongs to a dead consumer
    batch_count: int = 16                    # entries per XREADGROUP / XAUTOCLAIM
    reply_ttl_s: int = 30                    # a reply nobody BLPOPs (preprocessor gave up) expires
    verdict_ttl_s: int = 7 * 24 * 3600       # idempotency key: covers any retry of the preprocessor
    product_ttl_s: int = 7 * 24 * 3600       # run-policy state of a product (rebuilt from the audit)
    reconnect_max_s: float = 10.0            # ceiling of the exponential backoff when Redis is down
    metrics_host: str = "127.0.0.1"          # Prometheus /metrics: loopback unless configured
    metrics_port: int = 9102                 # 0 turns the endpoint off
    log_level: str = "INFO"

    def __post_init__(self) -> None:
        if self.audit_rotate_rows < 0:
            raise ValueError("aggregator setting audit_rotate_rows must be >= 0 (0: never rotate)")
        for name in ("block_ms", "claim_idle_ms", "batch_count", "reply_ttl_s", "verdict_ttl_s", "product_ttl_s"):
            if int(getattr(self, name)) <= 0:
                raise ValueError(f"aggregator setting {name} must be > 0, got {getattr(self, name)!r}")
        if not 0 <= int(self.metrics_port) <= 65535:
            raise ValueError(f"aggregator setting metrics_port must be 0 (off) .. 65535, got {self.metrics_port!r}")

    @property
    def consumer_name(self) -> str:
        return self.consumer or default_consumer_name()


# Environment variable -> field. VIALGUARD_* are shared with the other services.
ENV_VARS: dict[str, str] = {
    "VIALGUARD_REDIS_URL": "redis_url",
    "VIALGUARD_MODEL_REPOSITORY": "model_repository",
    "VIALGUARD_AUDIT_DB": "audit_db",
    "VIALGUARD_AUDIT_KEY_FILE": "audit_key_file",
    "VIALGUARD_AUDIT_ANCHOR": "audit_anchor",
    "AGGREGATOR_AUDIT_ROTATE_ROWS": "audit_rotate_rows",
    "AGGREGATOR_CONSUMER": "consumer",
    "AGGREGATOR_BLOCK_MS": "block_ms",
    "AGGREGATOR_CLAIM_IDLE_MS": "claim_idle_ms",
    "AGGREGATOR_BATCH_COUNT": "batch_count",
    "AGGREGATOR_REPLY_TTL_S": "reply_ttl_s",
    "AGGREGATOR_VERDICT_TTL_S": "verdict_ttl_s",
    "AGGREGATOR_PRODUCT_TTL_S": "product_ttl_s",
    "AGGREGATOR_RECONNECT_MAX_S": "reconnect_max_s",
    "AGGREGATOR_LOG_LEVEL": "log_level",
    "AGGREGATOR_METRICS_HOST": "metrics_host",
    "AGGREGATOR_METRICS_PORT": "metrics_port",
}

def from_env(environ: Mapping[str, str] | None = None, base: AggregatorConfig | None = None) -> AggregatorConfig:
    """Defaults overridden by whichever of ENV_VARS are set (and not empty)."""
    return settings_from_env(AggregatorConfig, ENV_VARS, "aggregator", environ, base)


def parse_args(argv: Sequence[str] | None = None, environ: Mapping[str, str] | None = None) -> AggregatorConfig:
    """Command line over environment over defaults."""
    return settings_from_args(AggregatorConfig, ENV_VARS, "aggregator", "python -m aggregator", "vialguard aggregator: scores -> verdicts (Redis Streams consumer group)", argv, environ)
