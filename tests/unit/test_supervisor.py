"""The supervisor starts children, waits for readiness with clear errors, and leaves no orphans."""
from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from vialguard_stack.supervisor import ServiceExited, ServiceNotReady, Supervisor, free_port

PY = sys.executable


def _alive(pid: int) -> bool:
    """True while `pid` exists and is not a zombie."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0]
    except FileNotFoundError:
        return False
    return state != "Z"


def _wait_for_file(path: Path, timeout_s: float = 10.0) -> str:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if path.exists() and path.read_text().strip():
            return path.read_text().strip()
        time.sleep(0.05)
    raise AssertionError(f"{path} never written")


def test_stop_all_ends_the_child_and_everything_it_forked(tmp_path: Path) -> None:
    pid_file = tmp_path / "grandchild.pid"
    script = textwrap.dedent(f"""
        import subprocess, sys, time
        p = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
        open({str(pid_file)!r}, "w").write(str(p.pid))
        print("child up", flush=True)
        time.sleep(120)
    """)
    with Supervisor(tmp_path / "run") as sup:
        child = sup.start("sleeper", [PY, "-c", script])
        grandchild = int(_wait_for_file(pid_file))
        assert child.running() and _alive(grandchild)
    assert not child.running()
    deadline = time.monotonic() + 5
    while _alive(grandchild) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not _alive(grandchild), "the grandchild was left behind as an orphan"
    assert "child up" in (tmp_path / "run" / "sleeper.log").read_text()


def test_a_child_that_ignores_sigterm_is_killed_after_the_grace_period(tmp_path: Path) -> None:
    script = "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); print('up', flush=True); time.sleep(120)"
    sup = Supervisor(tmp_path, stop_grace_s=0.5)
    child = sup.start("stubborn", [PY, "-c", script])
    _wait_for_log(child.log_path, "up")
    started = time.monotonic()
    codes = sup.stop_all()
    assert codes["stubborn"] == -signal.SIGKILL
    assert time.monotonic() - started < 5
    assert sup.children == []


def test_readiness_timeout_names_the_service_the_reason_and_its_log(tmp_path: Path) -> None:
    with Supervisor(tmp_path) as sup:
        child = sup.start("slowpoke", [PY, "-c", "print('still loading', flush=True); import time; time.sleep(60)"])
        _wait_for_log(child.log_path, "still loading")
        with pytest.raises(ServiceNotReady) as info:
            sup.wait_ready(child, lambda: (False, "port 1234 refused"), timeout_s=0.3, interval_s=0.05)
    message = str(info.value)
    assert "slowpoke" in message and "port 1234 refused" in message and "still loading" in message


def test_a_child_that_dies_while_starting_fails_fast_with_its_exit_code(tmp_path: Path) -> None:
    with Supervisor(tmp_path) as sup:
        child = sup.start("crasher", [PY, "-c", "import sys; print('bad config: no model', flush=True); sys.exit(3)"])
        started = time.monotonic()
        with pytest.raises(ServiceExited, match="code 3") as info:
            sup.wait_ready(child, lambda: (False, "not yet"), timeout_s=30, interval_s=0.05)
        assert time.monotonic() - started < 10
        assert "bad config: no model" in str(info.value)
        with pytest.raises(ServiceExited, match="crasher"):
            sup.check_alive()


def test_wait_ready_returns_once_the_probe_passes(tmp_path: Path) -> None:
    calls = iter([(False, "a"), (False, "b"), (True, "ok")])
    with Supervisor(tmp_path) as sup:
        child = sup.start("quick", [PY, "-c", "import time; time.sleep(30)"])
        elapsed = sup.wait_ready(child, lambda: next(calls), timeout_s=5, interval_s=0.01)
    assert 0 <= elapsed < 5


def test_a_missing_binary_is_reported_by_name(tmp_path: Path) -> None:
    with Supervisor(tmp_path) as sup, pytest.raises(ServiceExited, match="no-such-server"):
        sup.start("redis", ["/nonexistent/no-such-server"])


def test_sigterm_to_the_supervisor_stops_its_children(tmp_path: Path) -> None:
    """`kill <demo pid>` behaves like Ctrl-C: the with-block unwinds and children stop."""
    pid_file = tmp_path / "child.pid"
    script = textwrap.dedent(f"""
        import sys, time
        from pathlib import Path
        from vialguard_stack.supervisor import Supervisor
        try:
            with Supervisor(Path({str(tmp_path / 'run')!r})) as sup:
                c = sup.start("sleeper", [sys.executable, "-c", "import time; time.sleep(120)"])
                Path({str(pid_file)!r}).write_text(str(c.pid))
                time.sleep(120)
        except KeyboardInterrupt:
            print("interrupted", flush=True)
    """)
    outer = subprocess.Popen([PY, "-c", script], stdout=subprocess.PIPE, text=True,
                             cwd=Path(__file__).resolve().parents[2])
    try:
        child_pid = int(_wait_for_file(pid_file))
        os.kill(outer.pid, signal.SIGTERM)
        out, _ = outer.communicate(timeout=20)
    finally:
        if outer.poll() is None:
            outer.kill()
    assert "interrupted" in out and outer.returncode == 0
    assert not _alive(child_pid)


@pytest.mark.skipif(shutil.which("setpriv") is None, reason="util-linux setpriv is not installed")
def test_children_die_with_a_supervisor_killed_without_warning(tmp_path: Path) -> None:
    """kill -9 of the demo runs no cleanup code; the kernel's parent-death signal still ends the children."""
    pid_file = tmp_path / "child.pid"
    script = textwrap.dedent(f"""
        import sys, time
        from pathlib import Path
        from vialguard_stack.supervisor import Supervisor
        sup = Supervisor(Path({str(tmp_path / 'run')!r}))
        c = sup.start("sleeper", [sys.executable, "-c", "import time; time.sleep(120)"])
        Path({str(pid_file)!r}).write_text(str(c.pid))
        time.sleep(120)
    """)
    outer = subprocess.Popen([PY, "-c", script], cwd=Path(__file__).resolve().parents[2])
    try:
        child_pid = int(_wait_for_file(pid_file))
        assert _alive(child_pid)
        outer.kill()
        outer.wait(timeout=10)
        deadline = time.monotonic() + 5
        while _alive(child_pid) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not _alive(child_pid), "the child outlived its supervisor"
    finally:
        if outer.poll() is None:
            outer.kill()


def test_free_port_can_be_bound() -> None:
    import socket

    port = free_port()
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", port))
    assert 1024 <= port <= 65535


def _wait_for_log(path: Path, text: str, timeout_s: float = 10.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if path.exists() and text in path.read_text():
            return
        time.sleep(0.05)
    raise AssertionError(f"'{text}' never appeared in {path}")
