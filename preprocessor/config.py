"""Every setting of the preprocessor with its default, in one place.

Precedence: command line > environment (docker compose) > the defaults below.
Durations and sizes carry their unit in the name, so a compose file cannot mix
up seconds and milliseconds.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from vialguard.redis_url import display_redis_url
from vialguard.service_config import settings_from_args, settings_from_env

MIB = 1024 * 1024


@dataclass(frozen=True)
class PreprocessorConfig:
    host: str = "127.0.0.1"                     # loopback unless configured (DESIGN invariant 9)
    port: int = 50051
    redis_url: str = "redis://localhost:6379/0"
    triton_url: str = "localhost:8001"          # KServe v2 gRPC endpoint of Triton
    # Patches to Triton through system shared memory: only where Triton runs on this host
    # (preprocessor.shared_inputs); gRPC stays the fallback. Registration is Triton's restricted
    # shared-memory protocol: the key is read from this file (the shared-memory key only).
    triton_shared_memory: bool = False
    triton_shm_key_file: str = ""
    recipe: str = "bfs5-10ml"                   # shipped recipe id or a YAML path
    model_name: str = "inspector"
    # Budget of one Inspect when the caller sets no deadline (the line slot is 500 ms).
    deadline_ms: int = 450
    # Ceiling on a caller's deadline: a worker thread never waits longer than this.
    max_deadline_ms: int = 10_000
    # 16 full MONO16 frames of 1280x1024 are 40 MiB raw; 64 MiB leaves headroom
    # for protobuf framing and a larger recipe. Checked against the recipe at start.
    max_message_mb: int = 64
    heatmap_ttl_s: int = 3600                   # heatmaps of a rejected strip expire after this
    heatmap_max_acquisitions: int = 1000        # and at most this many rejected strips are kept
    workers: int = 32                           # gRPC threads; each WatchVerdicts holds one
    # Admission control (DESIGN invariant 8): acquisitions being decoded, cut and inferred at once;
    # the excess is refused at once with RESOURCE_EXHAUSTED, after waiting at most
    # admission_wait_ms for a slot. About 2 per Triton model instance: one running, one
    # waiting, so a verdict never queues behind more than one other (compose: 4 for 2 GPU instances).
    max_inflight: int = 2
    admission_wait_ms: int = 100
    # Calls beyond workers + this are refused by gRPC itself (RESOURCE_EXHAUSTED), never queued.
    max_pending_rpcs: int = 16
    # A repeat of an acquisition_id must carry the frames its first call had, for this long
    # (as long as the aggregator keeps the verdict it would replay).
    replay_ttl_s: int = 7 * 24 * 3600
    # Security (DESIGN invariant 9). TLS when both files are set; mutual TLS when a client CA is
    # set too (client certificates required). A token, when set, is required as
    # "authorization: Bearer <token>" on every call except the health check.
    tls_cert_file: str = ""
    tls_key_file: str = ""
    tls_client_ca_file: str = ""
    auth_token_file: str = ""
    reflection: bool = False                    # server reflection (grpcurl list) only when asked
    grace_s: float = 5.0                        # SIGTERM: in-flight calls get this long to finish
    health_interval_s: float = 2.0              # how often Redis and Triton are probed
    metrics_host: str = "127.0.0.1"             # Prometheus /metrics: loopback unless configured
    metrics_port: int = 9101                    # 0 turns the endpoint off
    log_level: str = "INFO"

    def __post_init__(self) -> None:
        for name in ("port", "deadline_ms", "max_deadline_ms", "max_message_mb", "heatmap_ttl_s",
                     "heatmap_max_acquisitions", "workers", "max_inflight", "replay_ttl_s"):
            if int(getattr(self, name)) <= 0:
                raise ValueError(f"preprocessor setting {name} must be > 0, got {getattr(self, name)!r}")
        if not 0 <= int(self.metrics_port) <= 65535:
            raise ValueError(f"preprocessor setting metrics_port must be 0 (off) .. 65535, got {self.metrics_port!r}")
        if self.grace_s < 0 or self.health_interval_s <= 0:
            raise ValueError("preprocessor settings grace_s must be >= 0 and health_interval_s > 0")
        if self.admission_wait_ms < 0 or self.max_pending_rpcs < 0:
            raise ValueError("preprocessor settings admission_wait_ms and max_pending_rpcs must be >= 0")
        if bool(self.tls_cert_file) != bool(self.tls_key_file):
            raise ValueError("preprocessor settings tls_cert_file and tls_key_file go together: set both or neither")
        if self.tls_client_ca_file and not self.tls_cert_file:
            raise ValueError("preprocessor setting tls_client_ca_file (mutual TLS) needs tls_cert_file and tls_key_file")

    @property
    def listen_address(self) -> str:
        return f"{self.host}:{self.port}"

    @property
    def max_message_bytes(self) -> int:
        return self.max_message_mb * MIB

    @property
    def redis_display(self) -> str:
        """The Redis URL without its password, for logs and error messages."""
        return display_redis_url(self.redis_url)


# Environment variable -> field. VIALGUARD_* are shared with the other services.
ENV_VARS: dict[str, str] = {
    "VIALGUARD_GRPC_PORT": "port",
    "VIALGUARD_REDIS_URL": "redis_url",
    "VIALGUARD_TRITON_URL": "triton_url",
    "PREPROCESSOR_TRITON_SHARED_MEMORY": "triton_shared_memory",
    "PREPROCESSOR_TRITON_SHM_KEY_FILE": "triton_shm_key_file",
    "VIALGUARD_RECIPE": "recipe",
    "VIALGUARD_MODEL_NAME": "model_name",
    "VIALGUARD_DEADLINE_MS": "deadline_ms",
    "PREPROCESSOR_HOST": "host",
    "PREPROCESSOR_MAX_DEADLINE_MS": "max_deadline_ms",
    "PREPROCESSOR_MAX_MESSAGE_MB": "max_message_mb",
    "PREPROCESSOR_HEATMAP_TTL_S": "heatmap_ttl_s",
    "PREPROCESSOR_HEATMAP_MAX_ACQUISITIONS": "heatmap_max_acquisitions",
    "PREPROCESSOR_WORKERS": "workers",
    "PREPROCESSOR_GRACE_S": "grace_s",
    "PREPROCESSOR_HEALTH_INTERVAL_S": "health_interval_s",
    "PREPROCESSOR_LOG_LEVEL": "log_level",
    "PREPROCESSOR_METRICS_HOST": "metrics_host",
    "PREPROCESSOR_METRICS_PORT": "metrics_port",
    "PREPROCESSOR_MAX_INFLIGHT": "max_inflight",
    "PREPROCESSOR_ADMISSION_WAIT_MS": "admission_wait_ms",
    "PREPROCESSOR_MAX_PENDING_RPCS": "max_pending_rpcs",
    "PREPROCESSOR_REPLAY_TTL_S": "replay_ttl_s",
    "PREPROCESSOR_TLS_CERT_FILE": "tls_cert_file",
    "PREPROCESSOR_TLS_KEY_FILE": "tls_key_file",
    "PREPROCESSOR_TLS_CLIENT_CA_FILE": "tls_client_ca_file",
    "PREPROCESSOR_AUTH_TOKEN_FILE": "auth_token_file",
    "PREPROCESSOR_REFLECTION": "reflection",
}

def from_env(environ: Mapping[str, str] | None = None, base: PreprocessorConfig | None = None) -> PreprocessorConfig:
    """Defaults overridden by whichever of ENV_VARS are set (and not empty)."""
    return settings_from_env(PreprocessorConfig, ENV_VARS, "preprocessor", environ, base)


def parse_args(argv: Sequence[str] | None = None, environ: Mapping[str, str] | None = None) -> PreprocessorConfig:
    """Command line over environment over defaults."""
    return settings_from_args(PreprocessorConfig, ENV_VARS, "preprocessor", "python -m preprocessor", __doc__.splitlines()[0], argv, environ)
