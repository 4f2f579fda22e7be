"""Evaluation of a calibrated version on a held-out kit, in the shape of Tables 1-3.

The kit must never have been used for training nor calibration: the figures
say how the version will do on products it has not seen.

- Table 1 (``patch`` thresholds): per region, patch accuracy; plus the paper's
  "Vial" column, here: a vial image (4 region patches of one frame) is
  rejected when any of its patches is over, defective when one of them shows
  the defect, good when the product is good.
- Table 2 (``strip`` thresholds): acquisitions judged by eq. 13 with
  vialguard.decision.decide_strip, the very function the aggregator runs.
- Table 3 (``run`` thresholds): products judged by RunPolicy.correctly_classified.
- The serving threshold set at each level, because that is what the line does.
- ROC and AUROC, defects as the class to detect: per region at patch level,
  and per strip with strip score = max over patches of phi / threshold of the
  patch's region (``strip`` set). That score is > 1 exactly when eq. 13
  rejects, so the curve passes through the operating point, while regions with
  different score levels stay comparable. The AUROC of eq. 13's plain max phi
  is given too.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from trainer.calibrate import acquisition_table, patch_counts, patch_level_mask, product_counts
from trainer.metrics import DecisionCounts, RocCurve, roc_curve
from trainer.qualification import DefectTruth, detection_table, false_rejects_by_region
from trainer.scoring import ScoredSet
from vialguard.calibration import Calibration
from vialguard.decision import Decision, RegionThresholds, decide_strip
from vialguard.recipe import REGION_IDS

MIN_THRESHOLD = 1e-12  # keeps phi / threshold finite for a threshold at 0


@dataclass(frozen=True)
class Timing:
    runtime: str
    ms_per_patch: float
    ms_per_acquisition_mean: float
    ms_per_acquisition_p99: float
    batches: int


@dataclass(frozen=True)
class Evaluation:
    """Held-out results; thresholds are the calibration's, never re-fitted here."""

    calibration: Calibration
    per_region: dict[str, DecisionCounts]        # Table 1, patch thresholds
    per_vial: DecisionCounts                     # Table 1 "Vial" column
    per_strip: DecisionCounts                    # Table 2, strip thresholds
    per_run: DecisionCounts                      # Table 3, run thresholds
    serving: dict[str, Any]                      # every level at the serving thresholds
    roc: dict[str, RocCurve]                     # "R0".."R3" (patches), "strip"
    strip_auroc_max_phi: float                   # eq. 13's plain max phi as the score
    timing: Timing
    kit: dict[str, int]
    # Detection by defect kind x severity, false rejects by region, the scores compared
    # (trainer.qualification); empty when the kit's ground truth was not given.
    qualification: dict[str, Any] = field(default_factory=dict)


def vial_counts(scored: ScoredSet, thresholds: RegionThresholds) -> DecisionCounts:
    """Vial images (acquisition, frame, vial): rejected if any region patch is over."""
    _, acq = scored.acquisitions()
    over = scored.scores > thresholds.as_array()[scored.region]
    key = (acq * (scored.frame.max() + 1) + scored.frame) * (scored.vial.max() + 1) + scored.vial
    _, group = np.unique(key, return_inverse=True)
    n = int(group.max()) + 1
    rejected = np.bincount(group, weights=over, minlength=n) > 0
    defect_here = np.bincount(group, weights=scored.patch_defective, minlength=n) > 0
    product_defective = np.bincount(group, weights=scored.acquisition_defective, minlength=n) > 0
    counted = defect_here | ~product_defective
    return DecisionCounts.from_decisions(defect_here[counted], rejected[counted])


def strip_decisions(scored: ScoredSet, thresholds: RegionThresholds) -> tuple[np.ndarray, np.ndarray]:
    """(defective [A], rejected [A]) with decide_strip on each acquisition's patches."""
    _, acq = scored.acquisitions()
    order = np.argsort(acq, kind="stable")
    bounds = np.searchsorted(acq[order], np.arange(acq.max() + 2))
    defective = np.zeros(bounds.size - 1, dtype=bool)
    rejected = np.zeros(bounds.size - 1, dtype=bool)
    for a in range(bounds.size - 1):
        rows = order[bounds[a]:bounds[a + 1]]
        decision = decide_strip(scored.scores[rows], scored.region[rows], thresholds)
        rejected[a] = decision.decision is Decision.REJECT
        defective[a] = scored.acquisition_defective[rows[0]]
    return defective, rejected


def strip_scores(scored: ScoredSet, thresholds: RegionThresholds, ratio: bool = True
                 ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per acquisition: (defective, max score/threshold (or score - threshold), max score).

    phi is positive with a level per region, so the ratio compares regions; a local
    score is a z-like statistic that may sit near or below 0, where a ratio means
    nothing, so it is compared by its margin. Either is above 1 (0) exactly when eq. 13
    rejects.
    """
    _, acq = scored.acquisitions()
    n = int(acq.max()) + 1
    t = thresholds.as_array()[scored.region]
    normalised = np.full(n, -np.inf)
    plain = np.full(n, -np.inf)
    np.maximum.at(normalised, acq, scored.scores / np.maximum(t, MIN_THRESHOLD) if ratio else scored.scores - t)
    np.maximum.at(plain, acq, scored.scores)
    defective = np.zeros(n, dtype=bool)
    defective[acq] = scored.acquisition_defective
    return defective, normalised, plain


def _levels(scored: ScoredSet, calibration: Calibration, name: str) -> dict[str, Any]:
    t = calibration.thresholds[name]
    table = acquisition_table(scored)
    defective, rejected = strip_decisions(scored, t)  # same acquisition order as the table
    return {
        "thresholds": t.as_mapping(),
        "patch": {rid: c.as_dict() for rid, c in patch_counts(scored, t).items()},
        "strip": DecisionCounts.from_decisions(defective, rejected).as_dict(),
        "run": product_counts(table, rejected, calibration.run_policy).as_dict(),
    }


def timing_of(scored: ScoredSet) -> Timing:
    per_batch_ms = scored.batch_seconds * 1e3
    return Timing(
        runtime=scored.runtime,
        ms_per_patch=scored.mean_ms_per_patch(),
        ms_per_acquisition_mean=float(per_batch_ms.mean()) if per_batch_ms.size else float("nan"),
        ms_per_acquisition_p99=float(np.percentile(per_batch_ms, 99)) if per_batch_ms.size else float("nan"),
        batches=int(per_batch_ms.size),
    )


def evaluate(scored: ScoredSet, calibration: Calibration,
             defects: Mapping[str, Sequence[DefectTruth]] | None = None,
             comparison: Mapping[str, Mapping[str, Any]] | None = None) -> Evaluation:
    """Tables 1-3, serving-threshold figures and ROC of one version on a held-out kit.

    ``defects`` (product id -> its defects) adds the detection-by-severity table;
    ``comparison`` (score kind -> summary, see :func:`summary`) the scores compared.
    """
    if scored.n == 0:
        raise ValueError("the evaluation kit is empty")
    patch_t, strip_t, run_t = (calibration.thresholds[k] for k in ("patch", "strip", "run"))
    table = acquisition_table(scored)
    strip_defective, strip_rejected = strip_decisions(scored, strip_t)
    use = patch_level_mask(scored)
    roc = {rid: roc_curve(scored.scores[use & (scored.region == r)],
                          scored.patch_defective[use & (scored.region == r)])
           for r, rid in enumerate(REGION_IDS)}
    defective, normalised, plain = strip_scores(scored, strip_t, ratio=calibration.score == "phi")
    roc["strip"] = roc_curve(normalised, defective)
    return Evaluation(
        calibration=calibration,
        per_region=patch_counts(scored, patch_t),
        per_vial=vial_counts(scored, patch_t),
        per_strip=DecisionCounts.from_decisions(strip_defective, strip_rejected),
        per_run=product_counts(table, strip_decisions(scored, run_t)[1], calibration.run_policy),
        serving=_levels(scored, calibration, calibration.serving),
        roc=roc,
        strip_auroc_max_phi=roc_curve(plain, defective).auroc,
        timing=timing_of(scored),
        kit={"patches": scored.n, "acquisitions": int(table.defective.size),
             "products": int(table.product_ids.size),
             "defective_products": int(np.unique(table.product[table.defective]).size),
             "min_runs_per_product": int(np.bincount(table.product).min()),
             "max_runs_per_product": int(np.bincount(table.product).max())},
        qualification=_qualification(scored, calibration, defects, comparison),
    )


def _qualification(scored: ScoredSet, calibration: Calibration, defects: Mapping[str, Sequence[DefectTruth]] | None,
                   comparison: Mapping[str, Mapping[str, Any]] | None) -> dict[str, Any]:
    serving = calibration.serving_thresholds
    out: dict[str, Any] = {"false_rejects_by_region": false_rejects_by_region(scored, serving)}
    if defects is not None:
        out["detection_by_kind_and_severity"] = detection_table(scored, serving, calibration.run_policy, defects)
    if comparison:
        out["scores_compared"] = dict(comparison)
    return out


def summary(scored: ScoredSet, calibration: Calibration) -> dict[str, Any]:
    """Strip AUROC and strip/run counts at the serving thresholds: one row of the scores compared."""
    serving = calibration.serving_thresholds
    table = acquisition_table(scored)
    defective, rejected = strip_decisions(scored, serving)
    _, normalised, _ = strip_scores(scored, calibration.thresholds["strip"], ratio=calibration.score == "phi")
    return {"strip_auroc": roc_curve(normalised, defective).auroc, "serving": calibration.serving,
            "strip": DecisionCounts.from_decisions(defective, rejected).as_dict(),
            "run": product_counts(table, rejected, calibration.run_policy).as_dict()}
