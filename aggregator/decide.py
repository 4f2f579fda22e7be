"""Scores of one acquisition + its version's calibration + the product's runs -> a verdict.

Pure functions, no Redis, no files: what the line decides is testable alone.

Run-policy state of a product is a mapping run_index -> ACCEPT/REJECT. The same
run counted twice would let one acquisition vote twice, so runs are keyed by
their index; if one run is acquired again (a retake under a new
acquisition_id), REJECT wins: a retake must never launder a rejected run into
an accepted one. That merge is order-free, so the state rebuilt from the audit
store after a Redis restart is the same whatever order the rows come in.
A run rejected because its version had no readable thresholds counts as a
rejected run: the product was not confirmed good on it.
"""
from __future__ import annotations

import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

import numpy as np

from aggregator.thresholds import CalibrationLookup
from vialguard.decision import Decision, RegionThresholds, RunPolicy, decide_strip
from vialguard.messages import PatchVerdict, RunPolicyState, ScoresMessage, VerdictMessage

MISSING_CALIBRATION = "missing-calibration"
# Applied when a version has no readable calibration: phi >= 0, so nothing can pass
# it, and the decision is forced to REJECT anyway (a phi of exactly 0 included).
REJECT_ALL = RegionThresholds(0.0, 0.0, 0.0, 0.0)

RunOutcomes = dict[int, str]


@dataclass(frozen=True)
class AggregatedVerdict:
    """A verdict plus what the audit must say about how it was reached."""

    verdict: VerdictMessage
    runs: RunOutcomes            # the product's runs including this one
    thresholds: dict[str, float] # region thresholds applied
    problem: str = ""            # why the version's thresholds were not used ("" when they were)


def merge_run(runs: Mapping[int, str], run_index: int, decision: str) -> RunOutcomes:
    """Add one run's outcome; a run already rejected stays rejected."""
    merged = dict(runs)
    if merged.get(run_index) != Decision.REJECT.value:
        merged[run_index] = decision
    return merged


def merge_runs(*sources: Iterable[tuple[int, str]]) -> RunOutcomes:
    """Union of several views of a product's runs (Redis hash, audit rows)."""
    merged: RunOutcomes = {}
    for source in sources:
        for run_index, decision in source:
            merged = merge_run(merged, int(run_index), str(decision))
    return merged


def run_policy_state(policy: RunPolicy, runs: Mapping[int, str]) -> RunPolicyState:
    accepts = sum(1 for d in runs.values() if d == Decision.ACCEPT.value)
    rejects = sum(1 for d in runs.values() if d == Decision.REJECT.value)
    product = policy.product_verdict(accepts, rejects)
    return RunPolicyState(policy.k, policy.n, len(runs), accepts, rejects, product.value)


def decide(
    msg: ScoresMessage,
    lookup: CalibrationLookup,
    product_runs: Mapping[int, str],
    now_unix_ms: int | None = None,
) -> AggregatedVerdict:
    """Apply the strip rule (eq. 13) with the thresholds of ``msg.model_version``, then the run policy."""
    started = time.perf_counter()
    calibration = lookup.calibration
    if calibration is not None:
        thresholds, threshold_set, policy = calibration.serving_thresholds, calibration.serving, calibration.run_policy
    else:
        thresholds, threshold_set, policy = REJECT_ALL, MISSING_CALIBRATION, RunPolicy()

    scores = np.array([p.score for p in msg.patches], dtype=np.float64)
    regions = np.array([p.region for p in msg.patches], dtype=np.int64)
    strip = decide_strip(scores, regions, thresholds)
    decision = strip.decision if calibration is not None else Decision.REJECT

    runs = merge_run(product_runs, msg.run_index, decision.value)
    patches = [
        PatchVerdict(p.frame, p.vial, p.region, float(p.score), float(t), bool(o))
        for p, t, o in zip(msg.patches, strip.thresholds, strip.over)
    ]
    now = int(time.time() * 1000) if now_unix_ms is None else int(now_unix_ms)
    timings = dict(msg.timings_ms)
    if msg.received_unix_ms > 0:
        timings["queue_wait_ms"] = float(max(0, now - msg.received_unix_ms))
    timings["aggregator_decide_ms"] = (time.perf_counter() - started) * 1000.0
    verdict = VerdictMessage(
        acquisition_id=msg.acquisition_id,
        product_id=msg.product_id,
        run_index=msg.run_index,
        decision=decision.value,
        strip_score=strip.strip_score,
        worst_margin=strip.worst_margin,
        model_name=msg.model_name,
        model_version=msg.model_version,
        threshold_set=threshold_set,
        patches=patches,
        run_policy=run_policy_state(policy, runs),
        timings_ms=timings,
        decided_unix_ms=now,
    )
    return AggregatedVerdict(verdict, runs, thresholds.as_mapping(), lookup.problem)
