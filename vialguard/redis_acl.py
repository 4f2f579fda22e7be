"""One Redis ACL user per service, with only the commands and keys it uses (DESIGN invariant 9).

The one list that docker-compose.yml's Redis command, the local stack and the
tests all take: tests/integration/test_redis_acl.py runs the real preprocessor
and aggregator against a real redis-server started with these rules, so a
command a service starts using without being granted fails a test, not the line.
The ``default`` user is switched off: a client without a user name gets nothing.
"""
from __future__ import annotations

from collections.abc import Mapping

# What a connection needs. redis-py also sends CLIENT SETINFO (Redis >= 7.2) and ignores its
# refusal; it is not granted, so the rules load on Redis 7.0 as on 7.4.
_CONNECTION = ["+ping"]

RULES: dict[str, list[str]] = {
    "preprocessor": [
        "resetchannels", "-@all", *_CONNECTION,
        # claim / digest / enqueue / wait (preprocessor.exchange), WatchVerdicts, heatmaps
        "+get", "+set", "+del", "+exists", "+pexpire", "+expire", "+xadd", "+blpop", "+lpop",
        "+xread", "+xrevrange", "+hset", "+hgetall", "+zadd", "+zremrangebyscore", "+zcard", "+zpopmin",
        "~vialguard:scores", "%R~vialguard:verdicts", "%R~vialguard:verdict:*", "~vialguard:reply:*",
        "~vialguard:inflight:*", "~vialguard:digest:*", "~vialguard:heatmaps:*",
    ],
    "aggregator": [
        "resetchannels", "-@all", *_CONNECTION,
        # consumer group (aggregator.consumer), publish script (aggregator.publish), dead letters, heartbeat
        "+xreadgroup", "+xack", "+xautoclaim", "+xgroup|create", "+xgroup|delconsumer", "+xpending",
        "+xinfo|consumers", "+evalsha", "+eval", "+script|load", "+multi", "+exec", "+discard",
        "+get", "+set", "+hget", "+hset", "+hgetall", "+expire", "+rpush", "+llen", "+xadd", "+pttl",
        # its /metrics: stream lengths and the group's pending entries and lag, read at each scrape
        "+xlen", "+xinfo|groups", "+exists",
        "~vialguard:scores", "~vialguard:scores:dead", "~vialguard:verdicts", "~vialguard:verdict:*",
        "~vialguard:reply:*", "~vialguard:product:*", "~vialguard:heartbeat:*",
    ],
    # Redis's own container health check (redis-cli ping) and nothing else.
    "healthcheck": ["resetchannels", "-@all", "+ping"],
    # Read-only look at the line's keys (the local stack's tests and fault campaign; an operator's shell).
    "operator": ["resetchannels", "-@all", "+ping", "+@read", "+info", "~vialguard:*"],
}
SERVICES = ("preprocessor", "aggregator", "healthcheck")  # the users docker-compose.yml creates


def user_directive(user: str, password: str) -> list[str]:
    """One ``user`` directive as redis-server arguments (or an ACL file line, joined by spaces)."""
    return [user, "on", f">{password}", *RULES[user]]


def server_args(passwords: Mapping[str, str]) -> list[str]:
    """redis-server command-line arguments: the default user off, one user per entry of ``passwords``."""
    args = ["--user", "default", "off", "resetchannels", "-@all"]
    for user in passwords:
        args += ["--user", *user_directive(user, passwords[user])]
    return args


def url_for(user: str, password: str, host: str, port: int, db: int = 0) -> str:
    return f"redis://{user}:{password}@{host}:{port}/{db}"
