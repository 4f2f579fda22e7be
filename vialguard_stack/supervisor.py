"""Child processes of the one-machine stack: start, wait until ready, stop without orphans.

Each child runs in its own session (process group), so stopping it signals
everything it started too (tritonserver's Python backend stubs, for one), and is
started through util-linux `setpriv --pdeathsig TERM` where that exists, so the
kernel SIGTERMs it if the supervisor itself dies: even a `kill -9` of the demo
leaves nothing behind. Not a `preexec_fn`: that forces a plain fork(), whose
atfork handlers abort in a process that has used gRPC (the demo has, by then). Output goes to one log file
per child under the run directory; when a child never becomes ready, or dies, the
error quotes the end of its log, which is where the reason is.
"""
from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import FrameType, TracebackType

from vialguard.errors import VialguardError
from vialguard_stack.probes import Probe

LOG_TAIL_LINES = 20


class ServiceNotReady(VialguardError):
    """A child did not pass its readiness probe in time."""


class ServiceExited(VialguardError):
    """A child exited while it should have been starting or serving."""


def free_port() -> int:
    """A TCP port free on 127.0.0.1 now (the OS picks it; tiny race until the child binds)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _die_with_parent(argv: Sequence[str]) -> list[str]:
    """`argv` wrapped so the kernel SIGTERMs it when the supervisor dies (when setpriv exists)."""
    setpriv = shutil.which("setpriv")
    if setpriv is None:  # process groups still cover every normal way out
        return list(argv)
    return [setpriv, "--pdeathsig", "TERM", "--", *argv]


@dataclass
class Child:
    name: str
    process: subprocess.Popen[bytes]
    log_path: Path

    @property
    def pid(self) -> int:
        return self.process.pid

    def running(self) -> bool:
        return self.process.poll() is None

    def log_tail(self, lines: int = LOG_TAIL_LINES) -> str:
        try:
            text = self.log_path.read_text(encoding="utf-8", errors="replace")
        except FileNotFoundError:
            return "(no log)"
        return "\n".join(text.splitlines()[-lines:]) or "(empty log)"


class Supervisor:
    """Owns the children of one run; `with Supervisor(run_dir) as sup:` stops them all on exit.

    Inside the with-block SIGTERM behaves like Ctrl-C (KeyboardInterrupt), so
    `kill <pid>` of the demo stops the stack as cleanly as Ctrl-C does.
    """

    def __init__(self, run_dir: Path, stop_grace_s: float = 10.0) -> None:
        self.run_dir = Path(run_dir)
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.stop_grace_s = stop_grace_s
        self.children: list[Child] = []
        self._previous_sigterm: object = None

    def start(self, name: str, argv: Sequence[str], env: Mapping[str, str] | None = None,
              cwd: Path | None = None) -> Child:
        """Start `argv` with `env` added to this process's environment; output to <run_dir>/<name>.log."""
        if shutil.which(argv[0]) is None:
            raise ServiceExited(f"{name} could not be started: {argv[0]} is not an executable program")
        log_path = self.run_dir / f"{name}.log"
        full_env = {**os.environ, **(env or {})}
        with open(log_path, "ab") as log:
            try:
                process = subprocess.Popen(
                    _die_with_parent(argv), env=full_env, cwd=cwd, stdin=subprocess.DEVNULL, stdout=log,
                    stderr=subprocess.STDOUT, start_new_session=True,
                )
            except OSError as exc:
                raise ServiceExited(f"{name} could not be started ({argv[0]}): {exc}") from exc
        child = Child(name, process, log_path)
        self.children.append(child)
        return child

    def adopt(self, name: str, process: subprocess.Popen[bytes], log_path: Path) -> Child:
        """Take charge of a child started elsewhere in its own session (tritonserver's launcher)."""
        child = Child(name, process, Path(log_path))
        self.children.append(child)
        return child

    def wait_ready(self, child: Child, probe: Callable[[], Probe], timeout_s: float,
                   interval_s: float = 0.2) -> float:
        """Poll `probe` until it passes; return the seconds it took.

        Raises ServiceExited as soon as the child dies (no point waiting out the
        timeout), ServiceNotReady with the probe's last reason when time runs out.
        """
        start = time.monotonic()
        reason = "not probed yet"
        while True:
            if not child.running():
                raise ServiceExited(
                    f"{child.name} exited with code {child.process.returncode} while starting. "
                    f"Last lines of {child.log_path}:\n{child.log_tail()}"
                )
            ok, reason = probe()
            elapsed = time.monotonic() - start
            if ok:
                return elapsed
            if elapsed >= timeout_s:
                raise ServiceNotReady(
                    f"{child.name} not ready after {timeout_s:.0f} s: {reason}. "
                    f"Last lines of {child.log_path}:\n{child.log_tail()}"
                )
            time.sleep(interval_s)

    def check_alive(self) -> None:
        """Raise ServiceExited if any child died (called between steps of a run)."""
        for child in self.children:
            if not child.running():
                raise ServiceExited(
                    f"{child.name} exited with code {child.process.returncode}. "
                    f"Last lines of {child.log_path}:\n{child.log_tail()}"
                )

    def stop(self, name: str) -> int | None:
        """Stop one child by name (a test that takes a service away, a benchmark that detaches one)."""
        child = next((c for c in self.children if c.name == name), None)
        if child is None:
            raise KeyError(f"no running child named {name!r}")
        code = self._stop(child)
        self.children.remove(child)
        return code

    def stop_all(self) -> dict[str, int | None]:
        """Stop children in reverse start order: SIGTERM the group, then SIGKILL after the grace.

        Reverse order lets a consumer drain before the queue it reads goes away.
        Returns each child's exit code (negative: the signal that ended it).
        """
        codes: dict[str, int | None] = {}
        for child in reversed(self.children):
            codes[child.name] = self._stop(child)
        self.children.clear()
        return codes

    def _stop(self, child: Child) -> int | None:
        self._signal_group(child, signal.SIGTERM)
        try:
            child.process.wait(timeout=self.stop_grace_s)
        except subprocess.TimeoutExpired:
            print(f"[stack] {child.name} ignored SIGTERM for {self.stop_grace_s:.0f} s: killing it",
                  file=sys.stderr)
        # Whatever is left in the group (the child, or helpers it forked) goes now.
        self._signal_group(child, signal.SIGKILL)
        try:
            child.process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            pass
        return child.process.returncode

    @staticmethod
    def _signal_group(child: Child, sig: signal.Signals) -> None:
        try:
            os.killpg(child.pid, sig)  # session leader: its pgid is its pid
        except (ProcessLookupError, PermissionError):
            pass

    def __enter__(self) -> "Supervisor":
        if threading.current_thread() is threading.main_thread():  # signals only go there
            self._previous_sigterm = signal.signal(signal.SIGTERM, _sigterm_as_interrupt)
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        if self._previous_sigterm is None:
            self.stop_all()
            return
        # Ignore a second SIGTERM while stopping, so the children are always reaped.
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        try:
            self.stop_all()
        finally:
            signal.signal(signal.SIGTERM, self._previous_sigterm)  # type: ignore[arg-type]
            self._previous_sigterm = None


def _sigterm_as_interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt(f"signal {signum}")
