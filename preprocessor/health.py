"""gRPC health (grpc.health.v1) that tells the truth about the dependencies.

SERVING only while Redis answers PING and the inference server is ready: a
load balancer or the camera software then sends acquisitions only to a
preprocessor that can decide them. A background thread re-probes every
``interval_s`` and logs each change with the reason, which is the first thing
an engineer reads when the line stops.
"""
from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence

import redis
from grpc_health.v1 import health, health_pb2

from vialguard.inference import Inspector

log = logging.getLogger(__name__)

Probe = Callable[[], tuple[bool, str]]


def redis_probe(client: redis.Redis, display: str) -> Probe:
    def probe() -> tuple[bool, str]:
        try:
            return bool(client.ping()), f"Redis at {display} answers"
        except redis.RedisError as exc:
            return False, f"Redis at {display} is unreachable: {exc}"
    return probe


def inspector_probe(inspector: Inspector, display: str) -> Probe:
    """Uses the inspector's ``is_ready()`` when it has one, else asks its patch size."""
    def probe() -> tuple[bool, str]:
        try:
            is_ready = getattr(inspector, "is_ready", None)
            ready = bool(is_ready()) if callable(is_ready) else inspector.patch_size() > 0
            return ready, f"inference server at {display} {'is ready' if ready else 'is not ready'}"
        except Exception as exc:  # any failure of a probe means "not ready", never a dead checker
            return False, f"inference server at {display} is not ready: {exc}"
    return probe


def triton_probe(url: str, model_name: str, timeout_s: float = 1.0) -> Probe:
    """Triton live and the model ready, asked over its own short-lived channel each time.

    A channel of its own, so a probe never waits behind (or breaks) the
    inference channel; tritonclient is imported here, only where it is used.
    """
    def probe() -> tuple[bool, str]:
        import tritonclient.grpc as grpcclient

        client = grpcclient.InferenceServerClient(url)
        try:
            if not client.is_server_live(client_timeout=timeout_s):
                return False, f"Triton at {url} is not live"
            ready = client.is_model_ready(model_name, client_timeout=timeout_s)
            return ready, f"Triton at {url}: model '{model_name}' {'ready' if ready else 'not ready'}"
        except Exception as exc:  # InferenceServerException and transport errors alike mean "not ready"
            return False, f"Triton at {url} is not answering: {exc}"
        finally:
            client.close()
    return probe


class HealthMonitor:
    """Keeps the health servicer's status of ``services`` in line with the probes."""

    def __init__(self, servicer: health.HealthServicer, probes: Sequence[Probe], services: Sequence[str],
                 interval_s: float) -> None:
        self._servicer = servicer
        self._probes = list(probes)
        self._services = list(services)
        self._interval_s = interval_s
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._last: tuple[bool, str] | None = None

    def check_once(self) -> bool:
        results = [probe() for probe in self._probes]
        ok = all(r[0] for r in results)
        reason = "; ".join(r[1] for r in results if not r[0]) or "all dependencies answer"
        status = health_pb2.HealthCheckResponse.SERVING if ok else health_pb2.HealthCheckResponse.NOT_SERVING
        if not self._stop.is_set():
            for service in self._services:
                self._servicer.set(service, status)
        if self._last != (ok, reason):
            (log.info if ok else log.warning)("health: %s (%s)", "SERVING" if ok else "NOT_SERVING", reason)
            self._last = (ok, reason)
        return ok

    def start(self) -> None:
        self.check_once()
        self._thread = threading.Thread(target=self._run, name="health-monitor", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(self._interval_s):
            self.check_once()

    def shutdown(self) -> None:
        """NOT_SERVING from now on (graceful stop: new calls go elsewhere) and stop probing."""
        self._stop.set()
        self._servicer.enter_graceful_shutdown()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout=self._interval_s + 5)
