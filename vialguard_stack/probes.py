"""Readiness probes: is Redis answering, is a gRPC server SERVING, is Triton ready.

The same functions answer the local supervisor's readiness waits and the Docker
HEALTHCHECKs (`python -m vialguard_stack.probes grpc 127.0.0.1:50051`), so "ready"
means one thing on a laptop and on the line cluster. Every probe returns a
(ok, reason) pair instead of raising: a probe that is not ready yet is the normal
case while a service starts, and the reason is what an engineer reads when it
never becomes ready. Third-party imports are local to each probe so an image
only needs the client of the probe it runs.
"""
from __future__ import annotations

import argparse
import os
import socket
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

from vialguard.messages import CONSUMER_GROUP, HEARTBEAT_TTL_MS, SCORES_STREAM, heartbeat_key

Probe = tuple[bool, str]


def redis_ready(host: str, port: int, password: str | None = None, timeout_s: float = 1.0,
                username: str | None = None) -> Probe:
    """PING answered with PONG (with AUTH when the server requires a password, as ``username`` if given)."""
    import redis

    client = redis.Redis(host=host, port=port, username=username, password=password or None, retry=_no_retry(),
                         socket_timeout=timeout_s, socket_connect_timeout=timeout_s)
    try:
        return (True, "PONG") if client.ping() else (False, "PING not answered with PONG")
    except redis.exceptions.AuthenticationError as exc:
        return False, f"redis at {host}:{port} refused the password: {exc}"
    except redis.exceptions.RedisError as exc:
        return False, f"redis at {host}:{port} not answering: {exc}"
    finally:
        client.close()


def _no_retry() -> object:
    """One attempt: a probe answers now; redis-py's default retries would take seconds to say no."""
    from redis.backoff import NoBackoff
    from redis.retry import Retry

    return Retry(NoBackoff(), 0)


def grpc_serving(target: str, service: str = "", timeout_s: float = 1.0, tls_ca: str = "", tls_cert: str = "",
                 tls_key: str = "") -> Probe:
    """The standard gRPC health service reports SERVING for `service` ("" = the server).

    ``tls_ca``: talk TLS, trusting that CA (with ``tls_cert``/``tls_key``: mutual TLS).
    The health check needs no token.
    """
    import grpc
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    if tls_ca:
        def read(path: str) -> bytes | None:
            return Path(path).read_bytes() if path else None
        credentials = grpc.ssl_channel_credentials(read(tls_ca), read(tls_key), read(tls_cert))
        channel = grpc.secure_channel(target, credentials)
    else:
        channel = grpc.insecure_channel(target)
    try:
        stub = health_pb2_grpc.HealthStub(channel)
        reply = stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=timeout_s)
        status = health_pb2.HealthCheckResponse.ServingStatus.Name(reply.status)
        return status == "SERVING", f"gRPC health of '{service or '<server>'}' at {target}: {status}"
    except grpc.RpcError as exc:
        return False, f"gRPC health at {target}: {exc.code().name} {exc.details()}"
    finally:
        channel.close()


def http_ready(url: str, timeout_s: float = 1.0) -> Probe:
    """HTTP 200 from `url` (Triton's /v2/health/ready, /v2/models/<m>/ready)."""
    try:
        with urllib.request.urlopen(url, timeout=timeout_s) as reply:  # noqa: S310 (local URL)
            return reply.status == 200, f"{url}: HTTP {reply.status}"
    except urllib.error.HTTPError as exc:
        return False, f"{url}: HTTP {exc.code}"
    except (urllib.error.URLError, OSError) as exc:
        return False, f"{url}: {exc}"


def consumer_active(redis_url: str, stream: str, group: str, name_prefix: str,
                    max_idle_ms: int, timeout_s: float = 1.0) -> Probe:
    """A consumer of `group` named `name_prefix...` whose loop turned less than `max_idle_ms` ago.

    What "turned" means depends on the Redis version, so both are read:
    - the aggregator's heartbeat key (set with a TTL each round; age = TTL - PTTL, no
      shared clock needed), where the consumer writes one: right on every version;
    - else XINFO CONSUMERS' ``idle``. From Redis 7.2 (the reply then also has
      ``inactive``) it counts from the last read *attempted*, so a consumer blocked in
      XREADGROUP on an idle stream stays fresh; before 7.2 it counts from the last read
      that *returned entries*, and an idle, healthy consumer looked dead ("last read
      49814 ms ago" on 7.0): there it only proves liveness while entries flow.
    The aggregator names its consumer hostname-pid, and a container's hostname is its
    own, so the prefix picks out this replica among several in the same group.
    """
    import redis

    client = redis.Redis.from_url(redis_url, socket_timeout=timeout_s, socket_connect_timeout=timeout_s,
                                  retry=_no_retry())
    try:
        consumers = client.xinfo_consumers(stream, group)
        mine = [c for c in consumers if _text(c["name"]).startswith(name_prefix)]
        beats = {_text(c["name"]): client.pttl(heartbeat_key(_text(c["name"]))) for c in mine}
    except redis.exceptions.ResponseError as exc:
        return False, f"no consumer group '{group}' on '{stream}' yet: {exc}"
    except redis.exceptions.RedisError as exc:
        return False, f"redis not answering: {exc}"
    finally:
        client.close()
    if not mine:
        return False, f"no consumer named {name_prefix}* in group '{group}' of '{stream}'"
    ages = [HEARTBEAT_TTL_MS - int(ttl) for ttl in beats.values() if int(ttl) > 0]
    if ages:
        age = min(ages)
        return age <= max_idle_ms, f"consumer {name_prefix}* loop turned {age} ms ago (limit {max_idle_ms} ms)"
    idle = min(int(c["idle"]) for c in mine)
    exact = any(b"inactive" in c or "inactive" in c for c in mine)  # Redis >= 7.2: idle = last attempt
    how = "last read attempt" if exact else "last read that returned entries (Redis < 7.2, no heartbeat)"
    return idle <= max_idle_ms, f"consumer {name_prefix}* {how} {idle} ms ago (limit {max_idle_ms} ms)"


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def file_fresh(path: str | Path, max_age_s: float) -> Probe:
    """A heartbeat file touched less than `max_age_s` ago (a worker loop still turning)."""
    p = Path(path)
    try:
        age = time.time() - p.stat().st_mtime
    except FileNotFoundError:
        return False, f"heartbeat {p} does not exist (worker never started its loop)"
    return age <= max_age_s, f"heartbeat {p} is {age:.1f} s old (limit {max_age_s:.0f} s)"


def _split_host_port(value: str, default_port: int) -> tuple[str, int]:
    host, _, port = value.rpartition(":")
    if not host:
        return value, default_port
    return host, int(port)


def main(argv: list[str] | None = None) -> int:
    """Exit 0 when healthy, 1 when not (the reason goes to stderr): Docker's contract."""
    parser = argparse.ArgumentParser(prog="python -m vialguard_stack.probes", description=__doc__)
    sub = parser.add_subparsers(dest="probe", required=True)
    p = sub.add_parser("redis", help="PING a Redis; password from $REDIS_PASSWORD")
    p.add_argument("address", help="host:port")
    p = sub.add_parser("grpc", help="gRPC health check")
    p.add_argument("target", help="host:port")
    p.add_argument("--service", default="")
    p.add_argument("--tls-ca", default="", help="CA of the server's certificate: talk TLS")
    p.add_argument("--tls-cert", default="", help="client certificate (mutual TLS)")
    p.add_argument("--tls-key", default="", help="client key (mutual TLS)")
    p = sub.add_parser("http", help="HTTP 200 from a URL")
    p.add_argument("url")
    p = sub.add_parser("consumer", help="a Redis Streams consumer still reading; URL from $VIALGUARD_REDIS_URL")
    p.add_argument("--stream", default=SCORES_STREAM)
    p.add_argument("--group", default=CONSUMER_GROUP)
    p.add_argument("--prefix", default=socket.gethostname(), help="consumer name prefix (default: hostname)")
    p.add_argument("--max-idle-ms", type=int, default=30_000)
    p = sub.add_parser("fresh", help="heartbeat file younger than --max-age seconds")
    p.add_argument("path")
    p.add_argument("--max-age", type=float, default=30.0)
    parser.add_argument("--timeout", type=float, default=2.0)
    args = parser.parse_args(argv)

    if args.probe == "redis":
        host, port = _split_host_port(args.address, 6379)
        ok, reason = redis_ready(host, port, os.environ.get("REDIS_PASSWORD"), args.timeout)
    elif args.probe == "grpc":
        ok, reason = grpc_serving(args.target, args.service, args.timeout, args.tls_ca, args.tls_cert, args.tls_key)
    elif args.probe == "http":
        ok, reason = http_ready(args.url, args.timeout)
    elif args.probe == "consumer":
        url = os.environ.get("VIALGUARD_REDIS_URL", "redis://localhost:6379/0")
        ok, reason = consumer_active(url, args.stream, args.group, args.prefix, args.max_idle_ms, args.timeout)
    else:
        ok, reason = file_fresh(args.path, args.max_age)
    print(reason, file=sys.stderr)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
