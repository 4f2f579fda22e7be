"""The stack benchmark runs end to end over the real processes and prints every path and its ratios.

Over the tiny stand-in model (tests/tiny_inspector.py), a few acquisitions only:
the figures themselves are the lead's to read with the trained cpu model.
"""
from __future__ import annotations

import re
from pathlib import Path

import pytest

from benchmarks.stack import main
from tests.integration.triton_support import PATCH, repository_with_v1, require_local_stack, triton_installation

pytestmark = [pytest.mark.integration, pytest.mark.slow]


@pytest.fixture(scope="module")
def repository(tmp_path_factory: pytest.TempPathFactory) -> Path:
    require_local_stack()
    return repository_with_v1(tmp_path_factory.mktemp("bench"))


def test_one_run_prints_bare_triton_and_stack_rows_ratios_and_stage_times(
        repository: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["--repository", str(repository), "--acquisitions", "6", "--warmup", "1", "--distinct", "2",
                 "--concurrency", "1,2", "--run-dir", str(tmp_path / "run")])
    out = capsys.readouterr().out
    assert code == 0, out
    assert f"{PATCH}x{PATCH} patches" in out and "inspector v1" in out
    assert "== concurrency 1 ==" in out and "== concurrency 2 ==" in out
    for name in ("bare ORT", "Triton gRPC", "Triton shm", r"stack \(gRPC Inspect\)"):
        rows = re.findall(rf"^{name}\s+([\d.]+)\s+([\d.]+)\s+([\d.]+)\s+(\d+)\s+(\d+)\s+(\d+)$", out, re.MULTILINE)
        assert len(rows) == 2, f"not one table row per concurrency for {name} in:\n{out}"
        for per_second, p50, p99, n, _over, failed in ([float(g) for g in row] for row in rows):
            assert per_second > 0 and 0 < p50 <= p99 and n == 6 and failed == 0
    assert re.search(r"^Triton shm/bare ORT: throughput x[\d.]+, p50 x[\d.]+, p99 x[\d.]+$", out, re.MULTILINE)
    assert re.search(r"^stack \(gRPC Inspect\)/bare ORT: throughput x[\d.]+", out, re.MULTILINE)
    assert "aim: stack throughput >= 0.9x bare" in out and "aim: stack p99 <= 300 ms" in out
    for stage in ("inference_ms", "queue_ms", "gRPC + camera client"):
        assert re.search(rf"^\s+{re.escape(stage)}\s+[\d.]+\s+[\d.]+\s+[\d.]+%$", out, re.MULTILINE), stage
    assert "3 heatmaps apart" in out and "WARNING" not in out


def test_a_repository_without_a_version_is_refused_with_the_fix(tmp_path: Path,
                                                                  capsys: pytest.CaptureFixture[str]) -> None:
    triton_installation()  # without Triton, the refusal names the Triton set-up first
    empty = tmp_path / "model_repository"
    (empty / "inspector").mkdir(parents=True)
    assert main(["--repository", str(empty), "--acquisitions", "1"]) == 2
    assert "make train-cpu" in capsys.readouterr().err
