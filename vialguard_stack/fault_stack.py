"""The local stack with a hand on every process: kill -9, SIGTERM, restart, roll a version out.

For the fault campaign (vialguard_stack.campaign). The same parts as
vialguard_stack.local_stack, on 127.0.0.1 only: a real redis-server (AOF, one
ACL user per service), a real tritonserver (restricted model control, loopback),
the aggregator and the preprocessor as processes. Each can be stopped the way a
fault stops it and started again on the same port and files, so what a camera
sees across the fault is what the line would see.
"""
from __future__ import annotations

import os
import secrets
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from vialguard import redis_acl
from vialguard.inspector_io import MODEL_NAME
from vialguard.messages import CONSUMER_GROUP, SCORES_STREAM
from vialguard.model_repository import list_versions
from vialguard_stack import probes
from vialguard_stack.rollout import load_version
from vialguard_stack.supervisor import free_port
from vialguard_stack.triton_server import TritonServer, start_triton

REPO_ROOT = Path(__file__).resolve().parent.parent


@dataclass
class Proc:
    name: str
    argv: list[str]
    env: dict[str, str]
    log: Path
    process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with open(self.log, "ab") as log:
            self.process = subprocess.Popen(self.argv, env={**os.environ, **self.env}, cwd=REPO_ROOT,
                                            stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                            start_new_session=True)

    def signal(self, sig: int, wait_s: float = 15.0) -> int | None:
        if self.process is None:
            return None
        try:
            os.killpg(self.process.pid, sig)
        except ProcessLookupError:
            pass
        try:
            return self.process.wait(wait_s)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            return self.process.wait(5)

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid


@dataclass
class FaultStack:
    run_dir: Path
    repository: Path
    version: int
    passwords: dict[str, str] = field(default_factory=lambda: {
        u: secrets.token_hex(12) for u in (*redis_acl.SERVICES, "operator")})
    redis_port: int = field(default_factory=free_port)
    grpc_port: int = field(default_factory=free_port)
    triton_ports: tuple[int, int, int] = field(default_factory=lambda: (free_port(), free_port(), free_port()))
    admin_key: str = field(default_factory=lambda: secrets.token_urlsafe(18))
    procs: dict[str, Proc] = field(default_factory=dict)
    triton: TritonServer | None = None
    consumer: str = field(default_factory=lambda: f"campaign-agg-{secrets.token_hex(3)}")

    def url(self, user: str) -> str:
        return redis_acl.url_for(user, self.passwords[user], "127.0.0.1", self.redis_port)

    @property
    def target(self) -> str:
        return f"127.0.0.1:{self.grpc_port}"

    @classmethod
    def create(cls, run_dir: Path, source_repository: Path, preprocessor_env: dict[str, str] | None = None
               ) -> "FaultStack":
        """A stack over a private copy of the newest committed version (a hot update adds a copy of it)."""
        run_dir.mkdir(parents=True, exist_ok=True)
        repository = run_dir / "model_repository"
        version = list_versions(source_repository)[-1]
        shutil.copytree(source_repository / MODEL_NAME / "configs", repository / MODEL_NAME / "configs")
        shutil.copytree(source_repository / MODEL_NAME / str(version), repository / MODEL_NAME / str(version))
        stack = cls(run_dir, repository, version)
        stack._define(preprocessor_env or {})
        return stack

    def _define(self, preprocessor_env: dict[str, str]) -> None:
        d = self.run_dir
        (d / "redis").mkdir(exist_ok=True)
        self.procs["redis"] = Proc("redis", [
            shutil.which("redis-server") or "redis-server", "--port", str(self.redis_port), "--bind", "127.0.0.1",
            "--dir", str(d / "redis"), "--appendonly", "yes", "--appendfsync", "everysec", "--save", "",
            *redis_acl.server_args(self.passwords)], {}, d / "redis.log")
        self.procs["aggregator"] = Proc("aggregator", [sys.executable, "-m", "aggregator"], {
            "VIALGUARD_REDIS_URL": self.url("aggregator"), "VIALGUARD_MODEL_REPOSITORY": str(self.repository),
            "VIALGUARD_AUDIT_DB": str(d / "audit" / "verdicts.sqlite3"),
            "VIALGUARD_AUDIT_KEY_FILE": str(d / "audit-key" / "audit.key"),
            "VIALGUARD_AUDIT_ANCHOR": str(d / "audit-anchor" / "verdicts.head.json"),
            "AGGREGATOR_CONSUMER": self.consumer, "AGGREGATOR_RECONNECT_MAX_S": "1.0"}, d / "aggregator.log")
        self.procs["preprocessor"] = Proc("preprocessor", [sys.executable, "-m", "preprocessor"], {
            "VIALGUARD_GRPC_PORT": str(self.grpc_port), "PREPROCESSOR_HOST": "127.0.0.1",
            "VIALGUARD_REDIS_URL": self.url("preprocessor"), "VIALGUARD_TRITON_URL": "",
            "PREPROCESSOR_LOG_LEVEL": "WARNING", **preprocessor_env}, d / "preprocessor.log")

    # ---- whole stack -----------------------------------------------------------------------

    def start(self) -> None:
        self.start_redis()
        self.start_triton()
        self.procs["preprocessor"].env["VIALGUARD_TRITON_URL"] = self.triton.grpc_url  # type: ignore[union-attr]
        self.start_aggregator()
        self.start_preprocessor()

    def stop(self) -> None:
        for name in ("preprocessor", "aggregator"):
            self.procs[name].signal(signal.SIGTERM)
        if self.triton is not None:
            self.triton.stop()
        self.procs["redis"].signal(signal.SIGTERM)

    # ---- one part at a time ------------------------------------------------------------------

    def start_redis(self, timeout_s: float = 20.0) -> None:
        self.procs["redis"].start()
        self._wait(lambda: probes.redis_ready("127.0.0.1", self.redis_port, self.passwords["healthcheck"],
                                              username="healthcheck"), timeout_s, "redis")

    def start_triton(self, timeout_s: float = 180.0) -> None:
        g, h, m = self.triton_ports
        self.triton = start_triton(self.repository, "cpu", grpc_port=g, http_port=h, metrics_port=m,
                                   log_path=self.run_dir / "tritonserver.log", pin_version=self.version,
                                   admin_key=self.admin_key, ready_timeout_s=timeout_s)

    def start_aggregator(self, timeout_s: float = 60.0) -> None:
        self.procs["aggregator"].start()
        self._wait(lambda: probes.consumer_active(self.url("aggregator"), SCORES_STREAM, CONSUMER_GROUP,
                                                  self.consumer, max_idle_ms=5_000), timeout_s, "aggregator")

    def start_preprocessor(self, timeout_s: float = 60.0) -> None:
        self.procs["preprocessor"].start()
        self._wait(lambda: probes.grpc_serving(self.target), timeout_s, "preprocessor")

    def kill(self, name: str) -> None:
        """kill -9, as a crash."""
        if name == "triton":
            assert self.triton is not None
            self.triton.kill()
        else:
            self.procs[name].signal(signal.SIGKILL)

    def terminate(self, name: str) -> int | None:
        return self.procs[name].signal(signal.SIGTERM)

    def restart(self, name: str) -> None:
        {"redis": self.start_redis, "triton": self.start_triton, "aggregator": self.start_aggregator,
         "preprocessor": self.start_preprocessor}[name]()

    def hot_update(self) -> int:
        """Publish a copy of the serving version as a new one and roll it out under traffic."""
        new = max(list_versions(self.repository)) + 1
        staging = self.repository / MODEL_NAME / f".staging-{new}"
        shutil.copytree(self.repository / MODEL_NAME / str(self.version), staging)
        staging.rename(self.repository / MODEL_NAME / str(new))  # whole or not at all (invariant 4)
        assert self.triton is not None
        load_version(self.triton.grpc_url, new, self.repository, "cpu", admin_key=self.admin_key)
        self.version = new
        return new

    def rss_kb(self, name: str) -> int:
        """Resident memory of a service process (VmRSS), in kB."""
        text = Path(f"/proc/{self.procs[name].pid}/status").read_text()
        return int(next(line.split()[1] for line in text.splitlines() if line.startswith("VmRSS:")))

    @staticmethod
    def _wait(probe, timeout_s: float, what: str) -> None:  # type: ignore[no-untyped-def]
        deadline, reason = time.monotonic() + timeout_s, "not probed"
        while time.monotonic() < deadline:
            ok, reason = probe()
            if ok:
                return
            time.sleep(0.1)
        raise RuntimeError(f"{what} not ready after {timeout_s:.0f} s: {reason}")
