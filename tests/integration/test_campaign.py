"""The fault/fuzz campaign of issue 7 on the real local stack (loopback only).

The quick subset runs in the default suite: a short overload with the aggregator
killed, and a few hundred malformed requests. The whole campaign (every fault,
10,000 fuzzed requests) is slow-marked: ``make campaign`` or ``pytest -m slow -k campaign``.
Load is expressed against the capacity measured in the same run, so a busy
machine offers less load, not a different test.
"""
from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.triton_support import require_local_stack
from vialguard.model_repository import list_versions
from vialguard_stack.campaign import (
    SCENARIOS, Camera, ScenarioResult, measure_capacity, run_scenario, service_time_ms, table, templates,
)
from vialguard_stack.fault_stack import REPO_ROOT, FaultStack
from vialguard_stack.fuzz import fuzz, fuzz_table

pytestmark = pytest.mark.integration
COMMITTED = REPO_ROOT / "model_repository"


@pytest.fixture(scope="module")
def running(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[FaultStack, Camera, float, float]]:
    require_local_stack()
    if not list_versions(COMMITTED):
        pytest.skip("no committed model version")
    stack = FaultStack.create(tmp_path_factory.mktemp("campaign"), COMMITTED)
    stack.start()
    camera = Camera(stack.target, templates(2))
    try:
        alone = service_time_ms(camera, 3)
        capacity = measure_capacity(camera, 4.0)
        yield stack, camera, alone, capacity
    finally:
        camera.close()
        stack.stop()


def assert_held(result: ScenarioResult) -> None:
    row = result.row()
    assert row["sent"] > 0
    assert row["never"] == 0, row            # every acquisition answered: a verdict or a fast refusal
    assert row["duplicates"] == 0, row       # exactly one verdict per acquisition ...
    assert row["unrecorded"] == 0, row       # ... each in the audit store
    assert row["wrong version"] == 0, row
    assert "INTERNAL" not in row["codes"] and "UNKNOWN" not in row["codes"], row  # type: ignore[operator]
    refusals = [o for o in result.outcomes if o.final == "RESOURCE_EXHAUSTED"]
    assert all(o.first_ms < 1000 or o.codes[0] != "RESOURCE_EXHAUSTED" for o in refusals)  # shed at once


def test_overload_with_the_aggregator_killed_loses_and_duplicates_nothing(
        running: tuple[FaultStack, Camera, float, float]) -> None:
    stack, camera, alone, capacity = running
    result = run_scenario(stack, camera, "kill-aggregator", 1.5 * capacity, before_s=2.0, down_s=2.0, after_s=6.0,
                          service_ms=alone)
    print(f"\none alone {alone:.0f} ms, capacity {capacity:.2f}/s\n{table([result.row()])}")
    assert_held(result)
    assert result.row()["refused"] > 0  # 1.5x capacity: the excess was refused, not queued
    assert result.triton_queue_worst_ms < 1000 * 3  # a bounded queue: never the 72 s of the campaign


def test_a_few_hundred_hostile_requests_get_no_internal_or_unknown(
        running: tuple[FaultStack, Camera, float, float]) -> None:
    stack, camera, _, _ = running
    report = fuzz(stack, camera.templates[0], 400, seed=11, max_seconds=120)
    print("\n" + fuzz_table(report))
    assert report.sent == 400
    assert report.codes["INTERNAL"] == 0 and report.codes["UNKNOWN"] == 0, report.forbidden_examples
    assert report.codes["INVALID_ARGUMENT"] > report.sent / 2


@pytest.mark.slow
def test_the_whole_campaign(running: tuple[FaultStack, Camera, float, float]) -> None:
    """Every fault at 1.5x the measured capacity, then 10,000 fuzzed requests with the memory watched."""
    stack, camera, alone, capacity = running
    results = [run_scenario(stack, camera, name, 1.5 * capacity, service_ms=alone) for name in SCENARIOS]
    print(f"\none alone {alone:.0f} ms, capacity {capacity:.2f}/s\n{table([r.row() for r in results])}")
    for result in results:
        assert_held(result)
        recovered = result.triton_queue_recovered_s
        assert recovered is None or recovered <= 10.0, result.row()  # Triton's queue wait < 1 s within 10 s
    report = fuzz(stack, camera.templates[0], 10_000)
    print("\n" + fuzz_table(report))
    assert report.codes["INTERNAL"] == 0 and report.codes["UNKNOWN"] == 0, report.forbidden_examples
    assert report.rss_growth < 0.10
    from aggregator.audit_cli import main as verify

    audit = Path(stack.run_dir)
    assert verify(["verify", str(audit / "audit" / "verdicts.sqlite3"), "--key-file",
                   str(audit / "audit-key" / "audit.key"), "--anchor",
                   str(audit / "audit-anchor" / "verdicts.head.json")]) == 0
