"""A real redis-server for integration tests: own port, own directory, never the one on 6379.

Usable as a context manager or through start/stop/restart. ``restart`` keeps the
port and the data directory, so with ``appendonly=True`` the data (streams,
consumer groups, keys) comes back as it would on the line (compose runs Redis
with AOF).
"""
from __future__ import annotations

import shutil
import socket
import subprocess
import time
from pathlib import Path

import redis

REDIS_SERVER = shutil.which("redis-server") or "/usr/bin/redis-server"


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class RedisServer:
    def __init__(self, directory: Path, appendonly: bool = False, port: int | None = None,
                 extra_args: list[str] | None = None, username: str | None = None,
                 password: str | None = None) -> None:
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self.appendonly = appendonly
        self.port = port or free_port()
        if self.port == 6379:
            raise ValueError("tests never use the Redis on 6379")
        self.process: subprocess.Popen[bytes] | None = None
        self.extra_args = list(extra_args or [])
        self.username, self.password = username, password  # used by client() and the readiness probe

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    @property
    def log_path(self) -> Path:
        return self.directory / "redis.log"

    def client(self, **kwargs: object) -> redis.Redis:
        return redis.Redis(host="127.0.0.1", port=self.port, protocol=2, username=self.username,
                           password=self.password, **kwargs)

    def start(self, timeout_s: float = 10.0) -> "RedisServer":
        if not Path(REDIS_SERVER).exists():
            raise RuntimeError("redis-server is not installed (scripts/setup.sh installs it from Debian)")
        args = [
            REDIS_SERVER, "--port", str(self.port), "--bind", "127.0.0.1", "--dir", str(self.directory),
            "--save", "", "--appendonly", "yes" if self.appendonly else "no", "--appendfsync", "always",
            "--daemonize", "no", "--logfile", str(self.log_path), "--protected-mode", "yes",
            *self.extra_args,
        ]
        self.process = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + timeout_s
        probe = self.client(socket_connect_timeout=0.5, socket_timeout=0.5)
        try:
            while True:
                if self.process.poll() is not None:
                    raise RuntimeError(f"redis-server exited with {self.process.returncode}: {self._log_tail()}")
                try:
                    if probe.ping():
                        return self
                except redis.RedisError:  # refused, or still loading its AOF
                    pass
                if time.monotonic() > deadline:
                    raise RuntimeError(f"redis-server on port {self.port} not ready in {timeout_s} s: "
                                       f"{self._log_tail()}")
                time.sleep(0.02)
        finally:
            probe.close()

    def stop(self, timeout_s: float = 10.0) -> None:
        """SIGTERM: Redis flushes its AOF and exits, as under `docker compose restart`."""
        if self.process is None:
            return
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout_s)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None

    def restart(self) -> "RedisServer":
        self.stop()
        return self.start()

    def _log_tail(self) -> str:
        try:
            return " | ".join(self.log_path.read_text(errors="replace").splitlines()[-5:])
        except OSError:
            return "(no log)"

    def __enter__(self) -> "RedisServer":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
