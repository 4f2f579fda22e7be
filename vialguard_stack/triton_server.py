"""A local `tritonserver` process, from the nvidia-pytriton wheel in .venv-triton.

For machines without Docker (development, CI, the demo, the benchmarks): the same
server binary as the Triton container, running the CPU config of `inspector`
(Python backend + ONNX Runtime). scripts/setup_triton.sh prepares .venv-triton:
numpy < 2 (Triton 2.51's stub returns empty outputs with numpy 2), onnxruntime,
and the wheel's binary with the Python backend stub for this Python.

The stub embeds the system libpython3.11; it finds its packages through the first
`python3` on PATH, so .venv-triton/bin goes first, and the wheel's bundled
libraries go on LD_LIBRARY_PATH. Each server gets its own shared-memory prefix so
that two servers (two test sessions) on one machine never share a region.

Nothing exposed by default (DESIGN invariant 9): every endpoint binds to
127.0.0.1, and the APIs that change what the server runs or reads from its
memory (model-repository: load/unload; shared-memory; trace; logging) are
restricted to callers that send the admin header with this server's random key
(``TritonServer.admin_key``; vialguard_stack.rollout sends it). Shared memory has a
key of its own (``TritonServer.shm_key``): the preprocessor registers its input
regions with it and never holds the key that loads models.
"""
from __future__ import annotations

import os
import secrets
import signal
import socket
import subprocess
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from vialguard.inspector_io import MODEL_NAME
from vialguard_stack.probes import http_ready

REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_ENV = REPO_ROOT / ".venv-triton"
LOG_TAIL_LINES = 40
ADMIN_HEADER = "vialguard-triton-admin"  # the header Triton checks on its restricted protocols
ADMIN_KEY_ENV = "VIALGUARD_TRITON_ADMIN_KEY"
# Triton 2.51 expects a restricted gRPC protocol's header under this prefix (its error says so).
ADMIN_GRPC_HEADER = f"triton-grpc-protocol-{ADMIN_HEADER}"
# Admin-only protocols of Triton: loading/unloading models, tracing, log settings; shared memory
# (which lets a caller make Triton read host memory) has its own key.
RESTRICTED_PROTOCOLS = ("model-repository", "trace", "logging")
SHARED_MEMORY_PROTOCOL = "shared-memory"


def restriction_flags(admin_header: str, admin_key: str, shm_key: str | None = None) -> list[str]:
    """tritonserver flags restricting RESTRICTED_PROTOCOLS to the admin key and shared memory to ``shm_key``.

    Without ``shm_key`` shared memory takes the admin key too.
    """
    if not shm_key:
        protocols = ",".join((*RESTRICTED_PROTOCOLS, SHARED_MEMORY_PROTOCOL))
        return [f"--grpc-restricted-protocol={protocols}:{admin_header}={admin_key}",
                f"--http-restricted-api={protocols}:{admin_header}={admin_key}"]
    protocols = ",".join(RESTRICTED_PROTOCOLS)
    return [f"--grpc-restricted-protocol={protocols}:{admin_header}={admin_key}",
            f"--grpc-restricted-protocol={SHARED_MEMORY_PROTOCOL}:{admin_header}={shm_key}",
            f"--http-restricted-api={protocols}:{admin_header}={admin_key}",
            f"--http-restricted-api={SHARED_MEMORY_PROTOCOL}:{admin_header}={shm_key}"]


class TritonNotInstalled(RuntimeError):
    """.venv-triton or the tritonserver binary in it is missing."""


class TritonStartError(RuntimeError):
    """tritonserver exited or did not become ready in time; the message holds its log tail."""


@dataclass(frozen=True)
class TritonInstallation:
    """Where scripts/setup_triton.sh put the server, its backends and its Python environment."""

    env: Path
    binary: Path
    backend_dir: Path
    cache_dir: Path
    libs_dir: Path

    @classmethod
    def find(cls, env: Path = DEFAULT_ENV) -> "TritonInstallation":
        env = Path(env).absolute()  # keep the venv's own path: bin/python3 is a symlink
        site = sorted(env.glob("lib/python3*/site-packages"))
        root = site[0] / "pytriton" / "tritonserver" if site else env / "missing"
        found = cls(env, root / "bin" / "tritonserver", root / "backends", root / "caches",
                    root.parent.parent / "nvidia_pytriton.libs")
        stub = found.backend_dir / "python" / "triton_python_backend_stub"
        missing = [p for p in (found.binary, stub, found.libs_dir) if not p.exists()]
        if missing:
            raise TritonNotInstalled(f"Triton is not installed in {env} (missing {missing[0]}); run scripts/setup_triton.sh")
        return found

    def environment(self, base: dict[str, str] | None = None) -> dict[str, str]:
        """Process environment: the backend's venv first on PATH, the wheel's libraries found."""
        env = dict(os.environ if base is None else base)
        for leak in ("PYTHONPATH", "PYTHONHOME", "PYTHONSTARTUP"):
            env.pop(leak, None)  # the caller's venv must not shadow numpy < 2
        env["VIRTUAL_ENV"] = str(self.env)
        env["PATH"] = f"{self.env / 'bin'}:{env.get('PATH', '/usr/bin:/bin')}"
        env["LD_LIBRARY_PATH"] = ":".join(p for p in (str(self.libs_dir), env.get("LD_LIBRARY_PATH", "")) if p)
        return env


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class TritonServer:
    """A running tritonserver child process and the addresses it serves."""

    process: subprocess.Popen[bytes]
    grpc_port: int
    http_port: int
    metrics_port: int
    log_path: Path
    repository: Path
    shm_prefix: str = ""
    started_s: float = field(default=0.0)
    admin_key: str = ""  # for the restricted model-control API (vialguard_stack.rollout.load_version)
    shm_key: str = ""    # for the restricted shared-memory API (the preprocessor's input regions)

    @property
    def grpc_url(self) -> str:
        return f"127.0.0.1:{self.grpc_port}"

    @property
    def http_url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    def log_tail(self, lines: int = LOG_TAIL_LINES) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "<no log>"

    def running(self) -> bool:
        return self.process.poll() is None

    def stop(self, grace_s: float = 10.0) -> None:
        """SIGTERM to Triton (it drains in-flight requests and stops its stubs), then SIGKILL what is left."""
        if self.running():
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(grace_s)
            except subprocess.TimeoutExpired:
                pass
        self.kill()

    def kill(self) -> None:
        """Stop at once, as a crash would: the server and its Python stubs."""
        try:
            os.killpg(self.process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.process.wait()
        self._remove_shared_memory()

    def _remove_shared_memory(self) -> None:
        """A killed server leaves its Python-backend regions in /dev/shm; they are this server's alone."""
        if self.shm_prefix:
            for region in Path("/dev/shm").glob(f"{self.shm_prefix}*"):
                region.unlink(missing_ok=True)

    def __enter__(self) -> "TritonServer":
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def start_triton(
    repository: Path,
    config_name: str = "cpu",
    *,
    installation: TritonInstallation | None = None,
    grpc_port: int | None = None,
    http_port: int | None = None,
    metrics_port: int | None = None,
    log_path: Path | None = None,
    ready_timeout_s: float = 60.0,
    load_model: bool = True,
    pin_version: int | None = None,
    bind: str = "127.0.0.1",
    admin_key: str | None = None,
) -> TritonServer:
    """Start tritonserver with explicit model control and wait until `inspector` is ready.

    Boots `inspector` with ``configs/<config_name>.pbtxt`` (newest version), then,
    with `pin_version`, rolls that version out (vialguard_stack.rollout) so the
    served config names the version's patch size, which clients read. Raises
    TritonStartError with the server's log tail if it exits or is not ready in time.
    `admin_key` (default: a random one) unlocks the restricted model-control API.
    """
    inst = installation or TritonInstallation.find()
    admin_key = admin_key or secrets.token_urlsafe(24)
    shm_key = secrets.token_urlsafe(24)
    repository = Path(repository).resolve()
    ports = [grpc_port or free_port(), http_port or free_port(), metrics_port or free_port()]
    shm_prefix = f"vialguard-{uuid.uuid4().hex[:12]}-"
    if log_path is None:
        log_path = Path(tempfile.mkdtemp(prefix="vialguard-triton-")) / "tritonserver.log"
    command = [
        str(inst.binary),
        f"--model-repository={repository}",
        "--model-control-mode=explicit",
        f"--model-config-name={config_name}",
        f"--backend-directory={inst.backend_dir}",
        f"--cache-directory={inst.cache_dir}",
        f"--grpc-port={ports[0]}", f"--http-port={ports[1]}", f"--metrics-port={ports[2]}",
        f"--grpc-address={bind}", f"--http-address={bind}", f"--metrics-address={bind}",
        *restriction_flags(ADMIN_HEADER, admin_key, shm_key),
        f"--backend-config=python,shm-region-prefix-name={shm_prefix}",
        "--exit-timeout-secs=5",
        "--log-info=true",
    ]
    boot_load = load_model and pin_version is None  # a pinned start loads once, with the pin
    if boot_load:
        command.append(f"--load-model={MODEL_NAME}")
    started = time.monotonic()
    with open(log_path, "wb") as log:
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=inst.environment(),
                                   cwd=repository, start_new_session=True)
    server = TritonServer(process, *ports, log_path=log_path, repository=repository, shm_prefix=shm_prefix,
                          admin_key=admin_key, shm_key=shm_key)
    probe = f"{server.http_url}/v2/models/{MODEL_NAME}/ready" if boot_load else f"{server.http_url}/v2/health/ready"
    try:
        _wait_ready(server, probe, ready_timeout_s)
        if pin_version is not None:
            from vialguard_stack.rollout import load_version  # tritonclient only where pinning is asked

            load_version(server.grpc_url, pin_version, repository, config_name=config_name, admin_key=admin_key)
    except BaseException:
        server.kill()
        raise
    server.started_s = time.monotonic() - started
    return server


def _wait_ready(server: TritonServer, probe: str, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    reason = "not probed yet"
    while time.monotonic() < deadline:
        if not server.running():
            raise TritonStartError(
                f"tritonserver exited with code {server.process.returncode} while starting; "
                f"log {server.log_path}:\n{server.log_tail()}"
            )
        ok, reason = http_ready(probe, timeout_s=1.0)
        if ok:
            return
        time.sleep(0.1)
    raise TritonStartError(
        f"tritonserver not ready after {timeout_s:.0f} s ({reason}); log {server.log_path}:\n{server.log_tail()}"
    )
