"""Aggregator settings resolve CLI > env > defaults; the first SIGTERM is graceful, the second is not."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from aggregator.config import AggregatorConfig, from_env, parse_args
from aggregator.shutdown import HARD_EXIT_CODE

REPO = Path(__file__).resolve().parents[2]


def test_command_line_beats_environment_beats_defaults() -> None:
    env = {"AGGREGATOR_BLOCK_MS": "250", "AGGREGATOR_CLAIM_IDLE_MS": "900", "VIALGUARD_AUDIT_DB": "/a/b.db"}
    config = parse_args(["--block-ms", "100"], env)
    assert config.block_ms == 100 and config.claim_idle_ms == 900
    assert config.audit_db == Path("/a/b.db")
    assert config.batch_count == AggregatorConfig().batch_count


def test_consumer_name_defaults_to_hostname_and_pid() -> None:
    name = from_env({}).consumer_name
    assert name.endswith(f"-{os.getpid()}")
    assert from_env({"AGGREGATOR_CONSUMER": "agg-1"}).consumer_name == "agg-1"


@pytest.mark.parametrize("env", [{"AGGREGATOR_BLOCK_MS": "soon"}, {"AGGREGATOR_CLAIM_IDLE_MS": "0"}])
def test_bad_settings_are_refused_with_their_name(env: dict[str, str]) -> None:
    with pytest.raises(ValueError, match=next(iter(env)).removeprefix("AGGREGATOR_").lower()):
        from_env(env)


_BUSY_WORKER = """
import sys, time
from aggregator.shutdown import Shutdown
s = Shutdown(); s.install()
print("ready", flush=True)
while not s.requested:
    time.sleep(0.01)
print("finishing", flush=True)
time.sleep(float(sys.argv[1]))  # the work in hand
print("done", flush=True)
"""


def _worker(work_s: float) -> subprocess.Popen[str]:
    proc = subprocess.Popen([sys.executable, "-c", _BUSY_WORKER, str(work_s)], cwd=REPO, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
    return proc


def test_first_sigterm_lets_the_work_in_hand_finish() -> None:
    proc = _worker(0.3)
    proc.send_signal(signal.SIGTERM)
    out, _ = proc.communicate(timeout=10)
    assert proc.returncode == 0 and out.split() == ["finishing", "done"]


def test_second_sigterm_exits_at_once() -> None:
    proc = _worker(30.0)
    proc.send_signal(signal.SIGTERM)
    assert proc.stdout is not None and proc.stdout.readline().strip() == "finishing"
    started = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=10) == HARD_EXIT_CODE
    assert time.monotonic() - started < 5.0
