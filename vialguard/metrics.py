"""What every service's Prometheus metrics share: latency buckets and the /metrics endpoint.

Each service keeps its metrics in its own registry (tests can build several
servers in one process without their counts mixing) and exposes it with
prometheus_client's own HTTP exporter, on loopback unless configured otherwise
(DESIGN invariant 9): a scrape never touches the gRPC workers that serve the camera.
"""
from __future__ import annotations

import logging
from collections.abc import Callable

from prometheus_client import CollectorRegistry, start_http_server

log = logging.getLogger(__name__)

# Seconds. The line's slot is 0.5 s: fine steps below it, a few above to see misses.
LATENCY_BUCKETS_S = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.25, 0.35, 0.5,
                     0.75, 1.0, 2.5, 5.0)


def serve_metrics(registry: CollectorRegistry, host: str, port: int, service: str) -> Callable[[], None]:
    """Expose ``registry`` at http://host:port/metrics in a daemon thread; returns a function that stops it.

    Port 0 turns the endpoint off (the returned function then does nothing). A port
    that cannot be bound is logged and the service carries on without metrics: the
    line's verdicts matter more than their figures.
    """
    if port == 0:
        log.info("%s: metrics endpoint off (metrics_port 0)", service)
        return lambda: None
    try:
        server, thread = start_http_server(port, addr=host, registry=registry)
    except OSError as exc:
        log.error("%s: cannot serve metrics on %s:%d (%s); running without a /metrics endpoint", service, host,
                  port, exc)
        return lambda: None
    log.info("%s: Prometheus metrics on http://%s:%d/metrics", service, host, port)

    def stop() -> None:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
    return stop
