"""The demo's stack for real: redis-server, tritonserver, aggregator, preprocessor, camera.

Runs over a tiny stand-in model (tests/tiny_inspector.py) so that it needs no
training; the end-to-end run with the trained cpu model is the lead's. Checks
that every acquisition gets a verdict from the served version, and that no
process of the stack outlives the run: at the end and on Ctrl-C.
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.integration.triton_support import repository_with_v1, require_local_stack
from vialguard_stack.demo import EXIT_INTERRUPTED, DemoConfig, run_demo
from vialguard_stack.local_stack import REPO_ROOT

pytestmark = pytest.mark.integration


def _processes_mentioning(text: str) -> list[str]:
    """Command lines of live processes that mention `text` (the run's own directory)."""
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit() or int(proc.name) == os.getpid():
            continue
        try:
            cmdline = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            state = (proc / "stat").read_text().split(")")[-1].split()[0]
        except OSError:
            continue
        if text in cmdline and state != "Z":
            found.append(cmdline)
    return found


@pytest.fixture(scope="module")
def repository(tmp_path_factory: pytest.TempPathFactory) -> Path:
    require_local_stack()
    return repository_with_v1(tmp_path_factory.mktemp("stack"))


def test_every_acquisition_gets_a_verdict_and_nothing_outlives_the_run(repository: Path, tmp_path: Path) -> None:
    lines: list[str] = []
    run_dir = tmp_path / "run"
    result = run_demo(DemoConfig(good=1, defective=1, runs=2, repository=repository, run_dir=run_dir,
                                 deadline_ms=10_000), out=lines.append)
    assert len(result.acquisitions) == 4 and result.failures == 0
    assert {o.model_version for o in result.acquisitions} == {1}
    assert {o.decision for o in result.acquisitions} <= {"ACCEPT", "REJECT"}
    assert all(o.server_total_ms and 0 < o.server_total_ms <= o.round_trip_ms for o in result.acquisitions)
    assert sorted(p.product_id for p in result.products) == ["P0000", "P0001"]
    text = "\n".join(lines)
    assert "P0000-R01" in text and "per product, run policy" in text and "p50" in text
    for name in ("redis", "tritonserver", "aggregator", "preprocessor"):
        assert (run_dir / f"{name}.log").is_file()
    assert (run_dir / "audit" / "verdicts.sqlite3").stat().st_size > 0
    assert _processes_mentioning(str(run_dir)) == []


def test_ctrl_c_stops_every_process_of_the_stack(repository: Path, tmp_path: Path) -> None:
    run_dir = tmp_path / "interrupted"
    demo = subprocess.Popen(
        # Paced at the line's 500 ms, so the stack is still busy when the SIGINT lands: 20 unpaced
        # acquisitions of the tiny test model are over in about a second.
        [sys.executable, "-m", "vialguard_stack.demo", "--good", "1", "--defective", "1", "--runs", "10",
         "--deadline-ms", "10000", "--pace-ms", "500", "--repository", str(repository), "--run-dir", str(run_dir)],
        cwd=REPO_ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        # A test run started in the background (`make test &`, some CI runners) hands its children
        # SIGINT ignored, and Python then installs no Ctrl-C handler: give the demo a terminal's default.
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    seen: list[str] = []
    try:
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            line = demo.stdout.readline()
            if not line:
                break
            seen.append(line)
            if line.startswith("P0000-R00"):  # the stack is up and the first verdict is in
                break
        assert any(line.startswith("P0000-R00") for line in seen), "".join(seen)
        assert _processes_mentioning(str(run_dir)), "the stack should be running now"
        demo.send_signal(signal.SIGINT)
        rest, _ = demo.communicate(timeout=60)
    finally:
        if demo.poll() is None:
            demo.kill()
    assert demo.returncode == EXIT_INTERRUPTED, "".join(seen) + rest
    assert "interrupted" in rest
    assert _processes_mentioning(str(run_dir)) == []
