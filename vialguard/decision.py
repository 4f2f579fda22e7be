"""Decision rules: per-region thresholds, the strip rule (eq. 13) and the k-of-n run policy.

Used by the aggregator on the line and by the trainer's calibration and evaluation,
so that the figures in a version's report are computed with the rule that serves.

Convention: the paper calls a *good* product "positive". Here the words are plain:
ACCEPT / REJECT for decisions, ``good`` / ``defective`` for labels.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from enum import Enum

import numpy as np

from vialguard.recipe import REGION_IDS


class Decision(str, Enum):
    ACCEPT = "ACCEPT"
    REJECT = "REJECT"
    PENDING = "PENDING"  # product verdict: not all runs are in yet


@dataclass(frozen=True)
class RegionThresholds:
    """One threshold on phi per region: a patch is *over* when its score is above it."""

    r0: float
    r1: float
    r2: float
    r3: float

    @classmethod
    def from_mapping(cls, data: dict[str, float]) -> "RegionThresholds":
        missing = [rid for rid in REGION_IDS if rid not in data]
        if missing:
            raise ValueError(f"thresholds are missing regions {missing}")
        return cls(*(float(data[rid]) for rid in REGION_IDS))

    def as_mapping(self) -> dict[str, float]:
        return dict(zip(REGION_IDS, self.as_array().tolist()))

    def as_array(self) -> np.ndarray:
        return np.array([self.r0, self.r1, self.r2, self.r3], dtype=np.float64)


@dataclass(frozen=True)
class StripDecision:
    """Outcome of the strip rule for one acquisition."""

    decision: Decision
    strip_score: float          # eq. 13: the max patch score
    worst_margin: float         # max(score - threshold of its region): > 0 means rejected
    over: np.ndarray            # bool [n_patches]
    thresholds: np.ndarray      # threshold applied to each patch [n_patches]


def patch_thresholds(regions: Sequence[int] | np.ndarray, thresholds: RegionThresholds) -> np.ndarray:
    """The threshold applied to each patch, given each patch's region index."""
    return thresholds.as_array()[np.asarray(regions, dtype=np.int64)]


def decide_strip(
    scores: Sequence[float] | np.ndarray,
    regions: Sequence[int] | np.ndarray,
    thresholds: RegionThresholds,
) -> StripDecision:
    """Eq. 13: reject the strip when any patch scores above its region's threshold.

    A NaN score (a broken inference) rejects: an answer that cannot be trusted
    must never accept a product.
    """
    s = np.asarray(scores, dtype=np.float64)
    if s.shape[0] != len(regions) or s.ndim != 1 or s.size == 0:
        raise ValueError(f"need one score per patch, got {s.shape} scores for {len(regions)} regions")
    t = patch_thresholds(regions, thresholds)
    over = ~(s <= t)  # NaN counts as over
    margin = np.where(np.isnan(s), np.inf, s - t)
    return StripDecision(
        decision=Decision.REJECT if over.any() else Decision.ACCEPT,
        strip_score=float(np.nanmax(s)) if not np.isnan(s).all() else float("nan"),
        worst_margin=float(margin.max()),
        over=over,
        thresholds=t,
    )


@dataclass(frozen=True)
class RunPolicy:
    """k-of-n run policy (paper 7.4; default 7 of 10).

    Line verdict: once n runs of a product are in, it is ACCEPTed when at least k
    runs accepted it, otherwise REJECTed: a product not confirmed good often
    enough never goes to a patient. Validation criterion (paper): a good product
    is correctly classified when >= k runs accept it, a defective one when >= k
    runs reject it.
    """

    k: int = 7
    n: int = 10

    def __post_init__(self) -> None:
        if not 1 <= self.k <= self.n:
            raise ValueError(f"run policy needs 1 <= k <= n, got k={self.k} n={self.n}")

    def product_verdict(self, accepts: int, rejects: int) -> Decision:
        if accepts + rejects < self.n:
            # Decided early when the remaining runs cannot change the outcome.
            if rejects > self.n - self.k:
                return Decision.REJECT
            return Decision.PENDING
        return Decision.ACCEPT if accepts >= self.k else Decision.REJECT

    def correctly_classified(self, good: bool, accepts: int, rejects: int) -> bool:
        return accepts >= self.k if good else rejects >= self.k
