"""The whole vialguard stack on one machine, without Docker.

A real `redis-server`, a real `tritonserver` (the nvidia-pytriton wheel's binary in
.venv-triton, CPU config: Python backend + ONNX Runtime), the aggregator and the
preprocessor, each a child process with its log under the run directory, started
in dependency order and each waited for until it is *ready*, not just started:
Redis answers PING, Triton serves the pinned model version, the aggregator's
consumer reads the scores stream, the preprocessor's gRPC health is SERVING;
then (unless turned off) the operator HMI, ready when its /healthz answers. Every
service's Prometheus /metrics is on its own free loopback port.

`preflight()` checks what the stack needs before anything starts, and says how to
fix what is missing (the usual one: no trained model yet -> `make train-cpu`).
Used by the demo (`python -m vialguard_stack.demo`) and by end-to-end tests.
"""
from __future__ import annotations

import secrets
import shutil
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from vialguard.errors import ModelVersionError, VialguardError
from vialguard.inspector_io import MODEL_NAME
from vialguard.messages import CONSUMER_GROUP, SCORES_STREAM
from vialguard.model_repository import list_versions
from vialguard import redis_acl
from vialguard.recipe import DEFAULT_RECIPE_ID
from vialguard_stack import probes
from vialguard_stack.rollout import check_version_complete, config_from_file, load_version
from vialguard_stack.supervisor import Supervisor, free_port
from vialguard_stack.triton_server import DEFAULT_ENV, TritonInstallation, TritonNotInstalled, start_triton

REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_REPOSITORY = REPO_ROOT / "model_repository"
TRITON_CONFIG = "cpu"


class StackNotReady(VialguardError):
    """Something the local stack needs is missing; the message says how to get it."""


@dataclass(frozen=True)
class StackSettings:
    run_dir: Path
    repository: Path = DEFAULT_REPOSITORY
    recipe: str = DEFAULT_RECIPE_ID
    triton_env: Path = DEFAULT_ENV
    version: int | None = None          # None: the newest published version
    python: str = sys.executable        # runs the preprocessor and the aggregator
    redis_timeout_s: float = 15.0
    triton_timeout_s: float = 180.0     # boot + loading the version under the Python backend
    service_timeout_s: float = 60.0
    hmi: bool = True                    # start the operator HMI too
    hmi_port: int = 0                   # 0: a free port
    labels: Path | None = None          # validation kit labels for the HMI's product view (JSON lines)
    shared_memory: bool = True          # patches to Triton (same host) through system shared memory


@dataclass(frozen=True)
class Preflight:
    installation: TritonInstallation
    redis_server: str
    version: int


@dataclass(frozen=True)
class LocalStack:
    """Addresses of a running stack (valid inside `with local_stack(...)`)."""

    preprocessor_target: str
    redis_url: str              # the read-only "operator" user: for looking, not for serving
    triton_grpc_url: str
    model_version: int
    run_dir: Path
    supervisor: Supervisor
    preprocessor_metrics_url: str = ""
    aggregator_metrics_url: str = ""
    hmi_url: str = ""                   # empty when the HMI was not started
    triton_metrics_url: str = ""
    audit_db: Path | None = None
    preprocessor_redis_url: str = ""    # the preprocessor's own ACL user: for another preprocessor replica
    triton_shm_key: str = ""            # Triton's shared-memory key (what the preprocessor holds)


def preflight(settings: StackSettings) -> Preflight:
    """Everything the stack needs, checked before anything starts; StackNotReady says the fix."""
    try:
        installation = TritonInstallation.find(settings.triton_env)
    except TritonNotInstalled as exc:
        raise StackNotReady(f"{exc}. `make setup` (scripts/setup.sh) prepares it.") from exc
    redis_server = shutil.which("redis-server")
    if redis_server is None:
        raise StackNotReady("redis-server is not installed; `make setup` installs the Debian package "
                            "(or: apt-get install redis-server)")
    versions = list_versions(settings.repository)
    if not versions:
        raise StackNotReady(
            f"no trained model: {settings.repository / MODEL_NAME} has no version directory yet. "
            "Run `make train-cpu` first (trains and publishes the cpu profile), then run the demo again."
        )
    version = settings.version if settings.version is not None else versions[-1]
    if version not in versions:
        raise StackNotReady(f"model version {version} is not in {settings.repository / MODEL_NAME} "
                            f"(published: {versions})")
    try:
        check_version_complete(settings.repository, version, config_from_file(settings.repository, TRITON_CONFIG))
    except (ModelVersionError, VialguardError) as exc:
        raise StackNotReady(f"{exc}. Publish a complete version with `make train-cpu`.") from exc
    return Preflight(installation, redis_server, version)


@contextmanager
def local_stack(settings: StackSettings, log: Callable[[str], None] | None = None) -> Iterator[LocalStack]:
    """Start the stack, yield its addresses, stop every child on exit (also on Ctrl-C/SIGTERM)."""
    say = log or (lambda text: None)
    ready = preflight(settings)
    run_dir = Path(settings.run_dir).resolve()
    with Supervisor(run_dir) as sup:
        # One ACL user per service, as on the line (vialguard.redis_acl), random passwords.
        passwords = {user: secrets.token_hex(16) for user in (*redis_acl.SERVICES, "operator")}
        redis_port = free_port()
        redis_url = redis_acl.url_for("operator", passwords["operator"], "127.0.0.1", redis_port)
        (run_dir / "redis").mkdir(parents=True, exist_ok=True)
        redis = sup.start("redis", [
            ready.redis_server, "--port", str(redis_port), "--bind", "127.0.0.1",
            "--dir", str(run_dir / "redis"), "--appendonly", "yes", "--save", "",
            *redis_acl.server_args(passwords),
        ])
        took = sup.wait_ready(redis, lambda: probes.redis_ready("127.0.0.1", redis_port, passwords["healthcheck"],
                                                                 username="healthcheck"), settings.redis_timeout_s)
        say(f"redis-server      127.0.0.1:{redis_port}  ready in {took:.1f} s (AOF on, one ACL user per service)")

        triton = start_triton(settings.repository, TRITON_CONFIG, installation=ready.installation,
                              log_path=run_dir / "tritonserver.log", load_model=False,
                              ready_timeout_s=settings.triton_timeout_s)
        sup.adopt("tritonserver", triton.process, triton.log_path)
        rollout = load_version(triton.grpc_url, ready.version, settings.repository, TRITON_CONFIG,
                               timeout_s=settings.triton_timeout_s, admin_key=triton.admin_key)
        admin_key_file = run_dir / "triton-admin.key"  # for `rollout --admin-key-file` against this server
        admin_key_file.touch(mode=0o600)
        admin_key_file.write_text(triton.admin_key + "\n")
        say(f"tritonserver      {triton.grpc_url}  {MODEL_NAME} v{rollout.version} ({TRITON_CONFIG} config, "
            f"patch {rollout.patch_size}) ready in {triton.started_s + rollout.load_s:.1f} s "
            f"(model control key: {admin_key_file})")

        consumer = f"local-aggregator-{secrets.token_hex(4)}"
        audit_db = run_dir / "audit" / "verdicts.sqlite3"
        aggregator_metrics = free_port()
        aggregator_url = redis_acl.url_for("aggregator", passwords["aggregator"], "127.0.0.1", redis_port)
        aggregator = sup.start("aggregator", [settings.python, "-m", "aggregator"], cwd=REPO_ROOT, env={
            "VIALGUARD_REDIS_URL": aggregator_url,
            "VIALGUARD_MODEL_REPOSITORY": str(Path(settings.repository).resolve()),
            "VIALGUARD_AUDIT_DB": str(audit_db),
            # Key and head checkpoint outside the database's directory (on the line: other volumes).
            "VIALGUARD_AUDIT_KEY_FILE": str(run_dir / "audit-key" / "audit.key"),
            "VIALGUARD_AUDIT_ANCHOR": str(run_dir / "audit-anchor" / "verdicts.head.json"),
            "AGGREGATOR_CONSUMER": consumer,
            "AGGREGATOR_METRICS_PORT": str(aggregator_metrics),
        })
        took = sup.wait_ready(aggregator, lambda: probes.consumer_active(
            aggregator_url, SCORES_STREAM, CONSUMER_GROUP, consumer, max_idle_ms=10_000), settings.service_timeout_s)
        say(f"aggregator        consumer {consumer}  ready in {took:.1f} s")

        grpc_port, preprocessor_metrics = free_port(), free_port()
        target = f"127.0.0.1:{grpc_port}"
        preprocessor_redis_url = redis_acl.url_for("preprocessor", passwords["preprocessor"], "127.0.0.1", redis_port)
        shm_key_file = run_dir / "triton-shm.key"  # the shared-memory key only, never the model-control one
        shm_key_file.touch(mode=0o600)
        shm_key_file.write_text(triton.shm_key + "\n")
        preprocessor = sup.start("preprocessor", [settings.python, "-m", "preprocessor"], cwd=REPO_ROOT, env={
            "PREPROCESSOR_TRITON_SHARED_MEMORY": "1" if settings.shared_memory else "0",
            "PREPROCESSOR_TRITON_SHM_KEY_FILE": str(shm_key_file),
            "PREPROCESSOR_METRICS_PORT": str(preprocessor_metrics),
            "VIALGUARD_GRPC_PORT": str(grpc_port),
            "PREPROCESSOR_HOST": "127.0.0.1",
            "VIALGUARD_REDIS_URL": preprocessor_redis_url,
            "VIALGUARD_TRITON_URL": triton.grpc_url,
            "VIALGUARD_RECIPE": settings.recipe,
            "VIALGUARD_MODEL_NAME": MODEL_NAME,
        })
        took = sup.wait_ready(preprocessor, lambda: probes.grpc_serving(target), settings.service_timeout_s)
        say(f"preprocessor      {target}  ready in {took:.1f} s (gRPC health SERVING; patches to Triton "
            f"{'through shared memory' if settings.shared_memory else 'over gRPC'})")

        hmi_url = start_hmi(sup, settings, target, audit_db, say) if settings.hmi else ""
        yield LocalStack(target, redis_url, triton.grpc_url, rollout.version, run_dir, sup,
                         f"http://127.0.0.1:{preprocessor_metrics}/metrics",
                         f"http://127.0.0.1:{aggregator_metrics}/metrics", hmi_url,
                         f"http://127.0.0.1:{triton.metrics_port}/metrics", audit_db, preprocessor_redis_url,
                         triton.shm_key)


def start_hmi(sup: Supervisor, settings: StackSettings, preprocessor: str, audit_db: Path,
              say: Callable[[str], None]) -> str:
    """The operator HMI over this stack (read-only); returns its URL once /healthz answers."""
    port = settings.hmi_port or free_port()
    url = f"http://127.0.0.1:{port}"
    hmi = sup.start("hmi", [settings.python, "-m", "hmi"], cwd=REPO_ROOT, env={
        "HMI_HOST": "127.0.0.1",
        "HMI_PORT": str(port),
        "VIALGUARD_PREPROCESSOR": preprocessor,
        "VIALGUARD_MODEL_REPOSITORY": str(Path(settings.repository).resolve()),
        "VIALGUARD_AUDIT_DB": str(audit_db),
        # The local stack's operator may verify the chain: same key and anchor as the aggregator.
        "VIALGUARD_AUDIT_KEY_FILE": str(audit_db.parent.parent / "audit-key" / "audit.key"),
        "VIALGUARD_AUDIT_ANCHOR": str(audit_db.parent.parent / "audit-anchor" / "verdicts.head.json"),
        "VIALGUARD_RECIPE": settings.recipe,
        "HMI_LABELS": str(settings.labels or ""),
    })
    took = sup.wait_ready(hmi, lambda: probes.http_ready(f"{url}/healthz"), settings.service_timeout_s)
    say(f"hmi               {url}/  ready in {took:.1f} s (read-only: WatchVerdicts, GetHeatmaps, audit, reports)")
    return url
