"""Counting right and wrong decisions, in the plain words of the line.

The paper calls a *good* product "positive": its "true positive ratio" is the
share of good units accepted and its "true negative ratio" the share of
defective units rejected. Here the fields say exactly that (``good_accepted``,
``defects_rejected``) so nobody has to remember which convention a column
follows. The ROC curve, on the other hand, follows the usual detection
convention (defect = the class to detect): its y axis is the share of defects
rejected, its x axis the share of good units rejected (false rejects).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import math

import numpy as np


@dataclass(frozen=True)
class DecisionCounts:
    """Outcome of one set of binary decisions against the truth."""

    n_good: int
    n_defective: int
    good_accepted: int
    defects_rejected: int

    @classmethod
    def from_decisions(cls, defective: np.ndarray, rejected: np.ndarray) -> "DecisionCounts":
        """Count from boolean arrays: the truth (defective) and the decision (rejected)."""
        d = np.asarray(defective, dtype=bool)
        r = np.asarray(rejected, dtype=bool)
        if d.shape != r.shape:
            raise ValueError(f"truth and decisions differ in shape: {d.shape} vs {r.shape}")
        return cls(
            n_good=int((~d).sum()),
            n_defective=int(d.sum()),
            good_accepted=int((~d & ~r).sum()),
            defects_rejected=int((d & r).sum()),
        )

    @property
    def total(self) -> int:
        return self.n_good + self.n_defective

    @property
    def accuracy(self) -> float:
        return (self.good_accepted + self.defects_rejected) / self.total if self.total else float("nan")

    @property
    def good_accepted_rate(self) -> float:
        """The paper's "true positive ratio" (1 - false-reject rate)."""
        return self.good_accepted / self.n_good if self.n_good else float("nan")

    @property
    def defects_rejected_rate(self) -> float:
        """The paper's "true negative ratio" (detection rate)."""
        return self.defects_rejected / self.n_defective if self.n_defective else float("nan")

    def as_dict(self) -> dict[str, Any]:
        return {
            "accuracy": _finite_or_none(self.accuracy),
            "accuracy_ci95": wilson_interval(self.good_accepted + self.defects_rejected, self.total),
            "good_accepted_rate": _finite_or_none(self.good_accepted_rate),
            "good_accepted_ci95": wilson_interval(self.good_accepted, self.n_good),
            "defects_rejected_rate": _finite_or_none(self.defects_rejected_rate),
            "defects_rejected_ci95": wilson_interval(self.defects_rejected, self.n_defective),
            "n_good": self.n_good,
            "n_defective": self.n_defective,
            "good_accepted": self.good_accepted,
            "defects_rejected": self.defects_rejected,
        }


def wilson_interval(successes: int, n: int, z: float = 1.959964) -> list[float] | None:
    """95 % Wilson score interval of a proportion: honest at 0 %, 100 % and small n, where the
    normal approximation gives intervals outside [0, 1] or of zero width. None for n = 0."""
    if n <= 0:
        return None
    p = successes / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return [max(0.0, centre - half), min(1.0, centre + half)]


def _finite_or_none(x: float) -> float | None:
    """JSON has no NaN: a rate over an empty class is reported as null."""
    return None if np.isnan(x) else float(x)


@dataclass(frozen=True)
class RocCurve:
    """ROC with defects as the class to detect; points ordered by falling threshold."""

    false_reject_rate: np.ndarray   # x: share of good units rejected
    detection_rate: np.ndarray      # y: share of defects rejected
    thresholds: np.ndarray          # point i: reject when score >= thresholds[i]
    auroc: float


def auroc(scores: np.ndarray, defective: np.ndarray) -> float:
    """Area under the ROC: P(defect scores above a good unit), ties counted half.

    Computed from ranks (Mann-Whitney U), O(n log n). NaN when a class is empty.
    """
    s = np.asarray(scores, dtype=np.float64)
    d = np.asarray(defective, dtype=bool)
    n_def, n_good = int(d.sum()), int((~d).sum())
    if n_def == 0 or n_good == 0:
        return float("nan")
    _, inverse, counts = np.unique(s, return_inverse=True, return_counts=True)
    # Average 1-based rank of each distinct value: ties share their mean rank.
    ends = np.cumsum(counts)
    mean_rank = ends - (counts - 1) / 2.0
    rank_sum_def = float(mean_rank[inverse][d].sum())
    u = rank_sum_def - n_def * (n_def + 1) / 2.0
    return u / (n_def * n_good)


def roc_curve(scores: np.ndarray, defective: np.ndarray) -> RocCurve:
    """ROC points for "reject when score >= t" over every distinct score t.

    The curve starts at (0, 0) (reject nothing) and ends at (1, 1); its
    trapezoid area equals :func:`auroc`.
    """
    s = np.asarray(scores, dtype=np.float64)
    d = np.asarray(defective, dtype=bool)
    n_def, n_good = int(d.sum()), int((~d).sum())
    order = np.argsort(-s, kind="stable")
    s_sorted, d_sorted = s[order], d[order]
    # Last index of every run of equal scores, in falling order.
    last = np.r_[np.nonzero(np.diff(s_sorted))[0], s_sorted.size - 1] if s.size else np.array([], int)
    tp = np.cumsum(d_sorted)[last]
    fp = np.cumsum(~d_sorted)[last]
    fpr = np.r_[0.0, fp / n_good] if n_good else np.r_[0.0, np.zeros_like(fp, dtype=float)]
    tpr = np.r_[0.0, tp / n_def] if n_def else np.r_[0.0, np.zeros_like(tp, dtype=float)]
    thresholds = np.r_[np.inf, s_sorted[last]]
    return RocCurve(fpr, tpr, thresholds, auroc(s, d))
