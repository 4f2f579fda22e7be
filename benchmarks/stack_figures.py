"""Figures of the stack benchmark: per-acquisition latencies -> throughput, percentiles, ratios, lines.

Kept apart from the runners (benchmarks/stack.py) so the arithmetic and the
wording can be tested without starting anything. A ratio is *how much of bare
ONNX Runtime's figure a layer keeps*: throughput ratio = layer / bare (1.0 means
the layer costs nothing), latency ratio = layer / bare (above 1.0 is overhead).
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

SLOT_MS = 500.0
STACK_THROUGHPUT_AIM = 0.9  # the stack should keep at least 0.9x bare ONNX Runtime's acquisitions/s


def percentile_ms(samples_ms: Sequence[float] | np.ndarray, q: float) -> float:
    """The q-th percentile (0..100) of latencies, linear interpolation; NaN when there are none."""
    values = np.asarray(samples_ms, dtype=np.float64)
    if not 0.0 <= q <= 100.0:
        raise ValueError(f"a percentile lies in [0, 100], got {q}")
    return float(np.percentile(values, q)) if values.size else float("nan")


@dataclass(frozen=True)
class PathFigures:
    """One way of running the model (bare ORT, Triton, the whole stack) over the same acquisitions."""

    name: str
    latencies_ms: np.ndarray  # one per timed acquisition, completion order irrelevant
    wall_s: float             # wall time of the timed phase, all workers together
    concurrency: int = 1
    failures: int = 0         # calls that ended without a result (never counted as latencies)

    @property
    def completed(self) -> int:
        return int(self.latencies_ms.size)

    @property
    def per_second(self) -> float:
        """Acquisitions answered per second of wall time."""
        return self.completed / self.wall_s if self.wall_s > 0 else float("nan")

    @property
    def p50_ms(self) -> float:
        return percentile_ms(self.latencies_ms, 50)

    @property
    def p99_ms(self) -> float:
        return percentile_ms(self.latencies_ms, 99)

    @property
    def over_slot(self) -> int:
        return int(np.count_nonzero(self.latencies_ms > SLOT_MS))


def ratio(layer: float, bare: float) -> float:
    """layer / bare, NaN when bare is zero or unknown (a benchmark never divides by zero)."""
    return layer / bare if bare and np.isfinite(bare) else float("nan")


def table_lines(rows: Sequence[PathFigures]) -> list[str]:
    """One row per path: acquisitions/s, p50, p99 per acquisition, calls over the slot, failures."""
    lines = [f"{'path':<22} {'acq/s':>8} {'p50 ms':>8} {'p99 ms':>8} {'n':>5} {'>500ms':>7} {'failed':>6}"]
    for r in rows:
        lines.append(f"{r.name:<22} {r.per_second:>8.2f} {r.p50_ms:>8.1f} {r.p99_ms:>8.1f} {r.completed:>5d} "
                     f"{r.over_slot:>7d} {r.failures:>6d}")
    return lines


STACK_P99_AIM_MS = 300.0  # issue 9: p99 <= 300 ms on 2 cores


def ratio_lines(bare: PathFigures, *layers: PathFigures) -> list[str]:
    """Each layer/bare for throughput and p50/p99, and whether the aims are met (the last layer is the stack)."""
    stack = layers[-1]
    lines = []
    for layer in layers:
        lines.append(f"{layer.name}/{bare.name}: throughput x{ratio(layer.per_second, bare.per_second):.2f}, "
                     f"p50 x{ratio(layer.p50_ms, bare.p50_ms):.2f}, p99 x{ratio(layer.p99_ms, bare.p99_ms):.2f}")
    kept = ratio(stack.per_second, bare.per_second)
    lines.append(f"aim: stack throughput >= {STACK_THROUGHPUT_AIM:.1f}x bare: "
                 f"{'met' if kept >= STACK_THROUGHPUT_AIM else 'NOT met'} (x{kept:.2f})")
    lines.append(f"aim: stack p99 <= {STACK_P99_AIM_MS:.0f} ms: {'met' if stack.p99_ms <= STACK_P99_AIM_MS else 'NOT met'} "
                 f"(p99 {stack.p99_ms:.1f} ms = {100 * stack.p99_ms / SLOT_MS:.1f} % of the {SLOT_MS:.0f} ms slot, "
                 f"{stack.over_slot} of {stack.completed} over it)")
    return lines


def stage_lines(stages_ms: Mapping[str, Sequence[float]]) -> list[str]:
    """Median and mean of each stage and its share of the summed medians, largest first."""
    medians = {name: percentile_ms(v, 50) for name, v in stages_ms.items() if len(v)}
    total = sum(m for m in medians.values() if np.isfinite(m))
    lines = [f"{'stage':<28} {'p50 ms':>8} {'mean ms':>8} {'share':>6}"]
    for name, median in sorted(medians.items(), key=lambda kv: -kv[1]):
        share = 100 * median / total if total > 0 else float("nan")
        lines.append(f"{name:<28} {median:>8.2f} {float(np.mean(stages_ms[name])):>8.2f} {share:>5.1f}%")
    return lines
