"""The gRPC server of the preprocessor: Inspection, health and (when asked) reflection.

Secure by default (DESIGN invariant 9): it listens on loopback unless
configured, reflection is off unless asked, TLS is on when a certificate and
key are given (mutual TLS when a client CA is given too: a client without a
certificate signed by it cannot even connect), and a bearer token, when
configured, is required on every call but the health check. Bytes that are not
a valid request are answered INVALID_ARGUMENT (preprocessor.wire), and gRPC
itself refuses calls beyond ``workers + max_pending_rpcs`` with
RESOURCE_EXHAUSTED instead of queuing them without bound.

Message limits are set for real full frames, and checked against the recipe at
start, so that a camera sending a whole 16-frame acquisition is never refused
by a limit nobody sized. A message over the limit is answered by gRPC itself
with RESOURCE_EXHAUSTED ("received message larger than max (N vs. M)"), before
any of it reaches Python.
"""
from __future__ import annotations

import logging
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import grpc
import redis
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from preprocessor.config import MIB, PreprocessorConfig
from preprocessor.health import HealthMonitor, Probe, inspector_probe, redis_probe
from preprocessor.metrics import MetricsInterceptor, PreprocessorMetrics
from preprocessor.service import HEATMAP_DRAIN_S, InspectionService
from preprocessor.wire import WireGuard
from vialguard.inference import Inspector
from vialguard.recipe import Recipe
from vialguard.v1 import inspection_pb2 as pb
from vialguard.v1 import inspection_pb2_grpc as pb_grpc

log = logging.getLogger(__name__)

SERVICE_NAME = pb.DESCRIPTOR.services_by_name["Inspection"].full_name  # "vialguard.v1.Inspection"
FRAMING_HEADROOM_BYTES = 1 * MIB
HEALTH_CHECK_METHOD = "/grpc.health.v1.Health/Check"  # probes need no token (they learn nothing)


def largest_acquisition_bytes(recipe: Recipe) -> int:
    """A whole acquisition sent RAW at the recipe's bit depth, plus protobuf framing."""
    frame = recipe.frame_width * recipe.frame_height * (recipe.bit_depth // 8)
    return recipe.frames_per_acquisition * frame + FRAMING_HEADROOM_BYTES


def check_message_limit(config: PreprocessorConfig, recipe: Recipe) -> None:
    """Refuse to start with a limit that would reject the recipe's own full acquisitions."""
    needed = largest_acquisition_bytes(recipe)
    if config.max_message_bytes < needed:
        raise ValueError(
            f"max_message_mb={config.max_message_mb} is too small for recipe '{recipe.id}': a full acquisition "
            f"({recipe.frames_per_acquisition} RAW frames of {recipe.frame_width}x{recipe.frame_height} at "
            f"{recipe.bit_depth} bits) needs {needed / MIB:.1f} MiB; raise PREPROCESSOR_MAX_MESSAGE_MB"
        )


def read_token(config: PreprocessorConfig) -> str:
    """The bearer token from its file (never from the environment, where `ps e` would show it)."""
    if not config.auth_token_file:
        return ""
    token = open(config.auth_token_file, encoding="utf-8").read().strip()
    if len(token) < 16:
        raise ValueError(f"the token in {config.auth_token_file} is shorter than 16 characters; use a random one "
                         "(python -c 'import secrets; print(secrets.token_urlsafe(32))')")
    return token


def server_credentials(config: PreprocessorConfig) -> grpc.ServerCredentials | None:
    """TLS credentials from the configured PEM files; None for plaintext (loopback development)."""
    if not config.tls_cert_file:
        return None

    def read(path: str) -> bytes:
        with open(path, "rb") as handle:
            return handle.read()
    pair = [(read(config.tls_key_file), read(config.tls_cert_file))]
    if config.tls_client_ca_file:
        return grpc.ssl_server_credentials(pair, root_certificates=read(config.tls_client_ca_file),
                                           require_client_auth=True)
    return grpc.ssl_server_credentials(pair)


def check_exposure(config: PreprocessorConfig, bind: str) -> None:
    """Refuse to serve beyond loopback in plaintext with no authentication at all."""
    host = bind.rsplit(":", 1)[0].strip("[]")
    loopback = host in ("127.0.0.1", "::1", "localhost") or host.startswith("127.")
    if not loopback and not config.tls_cert_file and not config.auth_token_file:
        log.warning("preprocessor listens on %s in PLAINTEXT with NO authentication: anyone on that network can "
                    "send acquisitions and read every verdict. Set PREPROCESSOR_TLS_CERT_FILE/KEY_FILE (and "
                    "PREPROCESSOR_TLS_CLIENT_CA_FILE or PREPROCESSOR_AUTH_TOKEN_FILE)", bind)


@dataclass
class RunningServer:
    server: grpc.Server
    port: int
    stopping: threading.Event
    health: HealthMonitor
    metrics: PreprocessorMetrics
    servicer: InspectionService | None = None

    def stop(self, grace_s: float | None) -> threading.Event:
        """Graceful stop: no new calls, NOT_SERVING, in-flight ones get grace_s (None: none).

        New calls are refused first: stopping the health monitor waits for a probe in
        progress, and a call accepted meanwhile would only be cut short by the grace.
        The event returned is set once the server has stopped and the heatmap fetches its
        last rejects left behind have drained (HEATMAP_DRAIN_S; none with grace_s None:
        they are cancelled): only then may the Redis client be closed.
        """
        self.stopping.set()
        if self.servicer is not None:
            self.servicer.begin_shutdown(grace_s or 0.0)
        stopped = self.server.stop(grace_s)
        self.health.shutdown()
        servicer = self.servicer
        if servicer is None:
            return stopped
        finished = threading.Event()

        def drain() -> None:  # after the calls: one still in flight may hand over a fetch until it ends
            stopped.wait()
            try:
                servicer.finish_heatmaps(HEATMAP_DRAIN_S if grace_s else 0.0)
            finally:
                finished.set()
        threading.Thread(target=drain, name="heatmaps-drain", daemon=True).start()
        return finished


def start_server(
    config: PreprocessorConfig,
    recipe: Recipe,
    inspector: Inspector,
    client: redis.Redis,
    address: str | None = None,
    inference_probe: Probe | None = None,
    metrics: PreprocessorMetrics | None = None,
) -> RunningServer:
    """Build, bind and start the server; ``address`` overrides the config's (tests bind port 0).

    ``inference_probe`` tells the health service whether inference can answer;
    by default the inspector's own ``is_ready()`` (or its patch size).
    ``metrics`` records every call (a fresh registry when not given).
    """
    check_message_limit(config, recipe)
    token = read_token(config)
    credentials = server_credentials(config)
    options = [
        ("grpc.max_receive_message_length", config.max_message_bytes),
        ("grpc.max_send_message_length", config.max_message_bytes),
        ("grpc.so_reuseport", 0),  # a second preprocessor on the same port fails loudly, not shares silently
    ]
    metrics = metrics if metrics is not None else PreprocessorMetrics()
    # WireGuard outermost: it answers bytes that are not a message, and checks the token,
    # before anything else (metrics included) sees the call.
    server = grpc.server(ThreadPoolExecutor(max_workers=config.workers, thread_name_prefix="grpc"), options=options,
                         interceptors=[WireGuard(token, exempt=(HEALTH_CHECK_METHOD,)), MetricsInterceptor(metrics)],
                         maximum_concurrent_rpcs=config.workers + config.max_pending_rpcs)
    stopping = threading.Event()
    servicer = InspectionService(config, recipe, inspector, client, stopping,
                                 on_heatmaps_lost=lambda reason: metrics.heatmaps_not_kept.labels(reason).inc())
    pb_grpc.add_InspectionServicer_to_server(servicer, server)
    health_servicer = health.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    if config.reflection:
        reflection.enable_server_reflection(
            (SERVICE_NAME, health_pb2.DESCRIPTOR.services_by_name["Health"].full_name, reflection.SERVICE_NAME), server
        )
    bind = address or config.listen_address
    check_exposure(config, bind)
    port = server.add_secure_port(bind, credentials) if credentials else server.add_insecure_port(bind)
    if port == 0:
        raise OSError(f"cannot listen on {bind} (address in use or not available)")
    monitor = HealthMonitor(
        health_servicer,
        [redis_probe(client, config.redis_display), inference_probe or inspector_probe(inspector, config.triton_url)],
        services=("", SERVICE_NAME),
        interval_s=config.health_interval_s,
    )
    server.start()
    monitor.start()
    log.info("preprocessor listening on %s (%s%s%s; recipe %s, model %s, Redis %s, Triton %s, %d inference slots)",
             bind.rsplit(":", 1)[0] + f":{port}",
             "mutual TLS" if config.tls_client_ca_file else "TLS" if credentials else "plaintext",
             ", token required" if token else "", ", reflection on" if config.reflection else "",
             recipe.id, config.model_name, config.redis_display, config.triton_url, config.max_inflight)
    return RunningServer(server, port, stopping, monitor, metrics, servicer)
