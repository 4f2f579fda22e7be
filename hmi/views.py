"""The data of each page, as pure functions of what the HMI received: testable without a browser.

Colours are decided here, not in the browser, so a test can check that a patch
over its threshold is painted as one: a cell's state comes from its worst
score/threshold ratio over the inspected frames.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from hmi.verdicts import PatchView, VerdictView
from vialguard.decision import RunPolicy
from vialguard.recipe import REGION_IDS
from vialguard.validation import judge_product

NEAR_RATIO = 0.8   # a patch at 80 % of its threshold or more is shown as close to it


def cell_state(score: float, threshold: float, over: bool) -> str:
    """'over' (rejects the strip), 'near' (within 20 % of its threshold) or 'ok'."""
    if over or score != score:  # NaN rejects
        return "over"
    if threshold > 0 and score >= NEAR_RATIO * threshold:
        return "near"
    return "ok"


def live_row(v: VerdictView) -> dict[str, object]:
    """One line of the live table."""
    return {
        "acquisition_id": v.acquisition_id, "product_id": v.product_id, "run_index": v.run_index,
        "decision": v.decision, "strip_score": round(v.strip_score, 6), "worst_margin": round(v.worst_margin, 6),
        "model_version": v.model_version, "server_ms": round(v.server_ms, 1),
        "over_patches": sum(p.over for p in v.patches), "decided_at_unix_ms": v.decided_at_unix_ms,
        "stream_id": v.stream_id,
    }


def strip_grid(v: VerdictView) -> dict[str, object]:
    """Vials x regions of one strip, each cell its worst patch over the inspected frames.

    The grid's size comes from the verdict's patches (the recipe that scored it),
    not from constants: 5 x 4 for bfs5-10ml.
    """
    if not v.patches:
        return {"acquisition_id": v.acquisition_id, "vials": 0, "regions": [], "cells": []}
    vials = max(p.vial for p in v.patches) + 1
    regions = max(p.region for p in v.patches) + 1
    worst: dict[tuple[int, int], PatchView] = {}
    for p in v.patches:
        key = (p.vial, p.region)
        held = worst.get(key)
        if held is None or _ratio(p) > _ratio(held):
            worst[key] = p
    cells = []
    for region in range(regions):
        row = []
        for vial in range(vials):
            p = worst.get((vial, region))
            row.append(None if p is None else {
                "vial": vial, "region": p.region_id, "frame": p.frame, "score": round(p.score, 6),
                "threshold": round(p.threshold, 6), "margin": round(p.margin, 6),
                "state": cell_state(p.score, p.threshold, p.over)})
        cells.append(row)
    region_ids = [REGION_IDS[r] if r < len(REGION_IDS) else f"R{r}" for r in range(regions)]
    return {"acquisition_id": v.acquisition_id, "decision": v.decision, "vials": vials, "regions": region_ids,
            "cells": cells}


def _ratio(p: PatchView) -> float:
    if p.score != p.score or p.over:
        return float("inf") if p.score != p.score else 1.0 + max(0.0, p.margin)
    return p.score / p.threshold if p.threshold > 0 else p.score


@dataclass(frozen=True)
class Rates:
    window_s: int
    verdicts: int
    rejects: int
    reject_rate: float | None         # share of the window's verdicts that were rejects
    per_minute: float | None          # throughput over the part of the window that saw verdicts


def rates(verdicts: Sequence[VerdictView], now_unix_ms: int, window_s: int) -> Rates:
    """Reject rate and throughput over the last ``window_s`` seconds (by decision time)."""
    start = now_unix_ms - window_s * 1000
    inside = [v for v in verdicts if v.decided_at_unix_ms >= start]
    rejects = sum(v.decision == "REJECT" for v in inside)
    if not inside:
        return Rates(window_s, 0, 0, None, None)
    first = min(v.decided_at_unix_ms for v in inside)
    span_s = max(1.0, (now_unix_ms - first) / 1000.0)  # a line that just started is not judged over 5 minutes
    return Rates(window_s, len(inside), rejects, rejects / len(inside), len(inside) / span_s * 60.0)


def product_rows(latest: Sequence[VerdictView], labels: Mapping[str, str]) -> list[dict[str, object]]:
    """One row per product from its latest verdict's run-policy state; judged against its label if known.

    Uses vialguard.validation.judge_product, as the demo's table does, so both agree.
    """
    rows = []
    for v in latest:
        policy = RunPolicy(v.k, v.n) if 1 <= v.k <= v.n else RunPolicy()
        label = labels.get(v.product_id)
        judged = judge_product(policy, label, v.accepts, v.rejects)
        rows.append({
            "product_id": v.product_id, "label": label, "k": policy.k, "n": policy.n,
            "runs": v.accepts + v.rejects, "accepts": v.accepts, "rejects": v.rejects,
            "product_verdict": v.product_decision or judged.verdict.value,
            "correct": judged.correct, "why": judged.why, "last_acquisition_id": v.acquisition_id,
            "model_version": v.model_version,
        })
    rows.sort(key=lambda r: str(r["product_id"]))
    return rows


def product_summary(rows: Sequence[Mapping[str, object]]) -> dict[str, object]:
    judged = [r for r in rows if r["correct"] is not None]
    right = sum(bool(r["correct"]) for r in judged)
    return {"products": len(rows), "judged": len(judged), "correct": right,
            "accuracy": right / len(judged) if judged else None,
            "pending": sum(r["product_verdict"] == "PENDING" for r in rows)}


def reject_patches(v: VerdictView, kept: Sequence[tuple[int, int, int]]) -> list[dict[str, object]]:
    """The patches the reject detail shows: the over-threshold ones, worst first, with whether images are kept.

    A strip rejected with no patch over (a broken score) shows its worst patch, as
    the preprocessor keeps that one's heatmap.
    """
    over = [p for p in v.patches if p.over]
    if not over and v.decision == "REJECT" and v.patches:
        over = [max(v.patches, key=_ratio)]
    kept_set = set(kept)
    over.sort(key=_ratio, reverse=True)
    return [{
        "frame": p.frame, "vial": p.vial, "region": p.region, "region_id": p.region_id,
        "score": p.score, "threshold": p.threshold, "margin": p.margin,
        "ratio": (p.score / p.threshold) if p.threshold > 0 else None,
        "has_images": (p.frame, p.vial, p.region) in kept_set,
    } for p in over]
