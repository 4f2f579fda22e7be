"""The gRPC server of the preprocessor: Inspection, health and reflection.

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
from preprocessor.service import InspectionService
from vialguard.inference import Inspector
from vialguard.recipe import Recipe
from vialguard.v1 import inspection_pb2 as pb
from vialguard.v1 import inspection_pb2_grpc as pb_grpc

log = logging.getLogger(__name__)

SERVICE_NAME = pb.DESCRIPTOR.services_by_name["Inspection"].full_name  # "vialguard.v1.Inspection"
FRAMING_HEADROOM_BYTES = 1 * MIB


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


@dataclass
class RunningServer:
    server: grpc.Server
    port: int
    stopping: threading.Event
    health: HealthMonitor
    metrics: PreprocessorMetrics

    def stop(self, grace_s: float | None) -> threading.Event:
        """Graceful stop: NOT_SERVING, no new calls, in-flight ones get grace_s (None: none)."""
        self.stopping.set()
        self.health.shutdown()
        return self.server.stop(grace_s)


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
    options = [
        ("grpc.max_receive_message_length", config.max_message_bytes),
        ("grpc.max_send_message_length", config.max_message_bytes),
        ("grpc.so_reuseport", 0),  # a second preprocessor on the same port fails loudly, not shares silently
    ]
    metrics = metrics if metrics is not None else PreprocessorMetrics()
    server = grpc.server(ThreadPoolExecutor(max_workers=config.workers, thread_name_prefix="grpc"), options=options,
                         interceptors=[MetricsInterceptor(metrics)])
    stopping = threading.Event()
    pb_grpc.add_InspectionServicer_to_server(InspectionService(config, recipe, inspector, client, stopping), server)
    health_servicer = health.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    reflection.enable_server_reflection(
        (SERVICE_NAME, health_pb2.DESCRIPTOR.services_by_name["Health"].full_name, reflection.SERVICE_NAME), server
    )
    bind = address or config.listen_address
    port = server.add_insecure_port(bind)
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
    log.info("preprocessor listening on %s (recipe %s, model %s, Redis %s, Triton %s)", bind.rsplit(":", 1)[0]
             + f":{port}", recipe.id, config.model_name, config.redis_display, config.triton_url)
    return RunningServer(server, port, stopping, monitor, metrics)
