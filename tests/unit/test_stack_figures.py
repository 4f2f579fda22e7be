"""The stack benchmark's arithmetic: percentiles, throughput, ratios and the aims' wording."""
from __future__ import annotations

import numpy as np
import pytest

from benchmarks.stack_figures import (
    SLOT_MS,
    PathFigures,
    percentile_ms,
    ratio,
    ratio_lines,
    stage_lines,
    table_lines,
)


def test_percentiles_interpolate_between_samples_and_refuse_a_rank_outside_0_100() -> None:
    samples = [4.0, 1.0, 3.0, 2.0]
    assert percentile_ms(samples, 50) == pytest.approx(2.5)
    assert percentile_ms(samples, 100) == 4.0 and percentile_ms(samples, 0) == 1.0
    assert np.isnan(percentile_ms([], 99))
    with pytest.raises(ValueError, match="0, 100"):
        percentile_ms(samples, 101)


def test_throughput_counts_answered_acquisitions_per_second_of_wall_time_not_failures() -> None:
    figures = PathFigures("x", np.array([10.0, 20.0, SLOT_MS + 1]), wall_s=1.5, failures=2)
    assert figures.completed == 3 and figures.per_second == pytest.approx(2.0)
    assert figures.over_slot == 1


def test_a_ratio_against_a_zero_or_unknown_bare_figure_is_nan_not_an_error() -> None:
    assert ratio(45.0, 50.0) == pytest.approx(0.9)
    assert np.isnan(ratio(1.0, 0.0)) and np.isnan(ratio(1.0, float("nan")))


def _path(name: str, latency_ms: float, per_second: float) -> PathFigures:
    n = 10
    return PathFigures(name, np.full(n, latency_ms), wall_s=n / per_second)


@pytest.mark.parametrize("stack_rate, verdict", [(95.0, "met"), (80.0, "NOT met")])
def test_ratio_lines_give_layer_over_bare_and_say_whether_the_stack_keeps_0_9x(stack_rate: float, verdict: str) -> None:
    bare, triton, stack = _path("bare", 10.0, 100.0), _path("triton", 12.0, 90.0), _path("stack", 20.0, stack_rate)
    text = "\n".join(ratio_lines(bare, triton, stack))
    assert "triton/bare: throughput x0.90, p50 x1.20, p99 x1.20" in text
    assert f"stack/bare: throughput x{stack_rate / 100:.2f}, p50 x2.00" in text
    assert f": {verdict} (x{stack_rate / 100:.2f})" in text
    assert f"p99 <= 300 ms: met (p99 20.0 ms = {100 * 20 / SLOT_MS:.1f} % of the 500 ms slot, 0 of 10 over it)" in text


def test_the_p99_aim_is_300_ms_and_the_last_layer_is_the_stack() -> None:
    bare, shm, stack = _path("bare", 10.0, 100.0), _path("shm", 11.0, 95.0), _path("stack", 320.0, 91.0)
    text = "\n".join(ratio_lines(bare, shm, stack))
    assert "shm/bare: throughput x0.95" in text and "stack/bare: throughput x0.91" in text
    assert "p99 <= 300 ms: NOT met (p99 320.0 ms" in text


def test_table_has_a_header_and_one_row_per_path_in_order() -> None:
    lines = table_lines([_path("bare", 10.0, 100.0), _path("stack", 20.0, 50.0)])
    assert len(lines) == 3 and "acq/s" in lines[0] and "p99 ms" in lines[0]
    assert lines[1].split()[:3] == ["bare", "100.00", "10.0"] and lines[2].split()[:3] == ["stack", "50.00", "20.0"]


def test_stage_lines_rank_stages_by_median_and_shares_add_up_to_100() -> None:
    lines = stage_lines({"queue_ms": [1.0, 1.0, 1.0], "inference_ms": [3.0, 3.0, 30.0], "empty": []})
    assert [line.split()[0] for line in lines[1:]] == ["inference_ms", "queue_ms"]
    shares = [float(line.split()[-1].rstrip("%")) for line in lines[1:]]
    assert sum(shares) == pytest.approx(100.0, abs=0.2) and shares[0] == pytest.approx(75.0)
    assert lines[1].split()[2] == "12.00"  # the mean keeps the outlier the median hides
