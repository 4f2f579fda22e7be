"""Exact 1-D threshold search and the coordinate descent built on it.

Every calibration step reduces to one 1-D problem: each item (patch,
acquisition or product) is right either when ``t >= key`` (a good item that
must be accepted) or when ``t < key`` (a defective item that must be
rejected). Keys may be +-inf for items whose fate other regions already
sealed. The best t over the observed keys comes from one sort and a
``searchsorted``, so 100k patches take milliseconds, not the O(n^2) of trying
every threshold against every score.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from vialguard.decision import RegionThresholds

MAX_ROUNDS = 50

KeyPair = tuple[np.ndarray, np.ndarray]
"""(good keys, defect keys) of one 1-D problem: a good item is right when t >= key,
a defective one when t < key."""


KeysFor = Callable[[np.ndarray, int], list[KeyPair]]
"""(thresholds, region) -> the 1-D problems for that region, primary first, then tie-breakers."""


@dataclass(frozen=True)
class ThresholdChoice:
    threshold: float
    correct: tuple[int, ...]   # items right at each level (primary first, then tie-breakers)
    total: int                 # items of the primary level

    @property
    def accuracy(self) -> float:
        return self.correct[0] / self.total if self.total else float("nan")


def count_correct(keys: KeyPair, t: np.ndarray) -> np.ndarray:
    """Items right at each threshold of ``t`` (keys need not be sorted)."""
    g, d = np.sort(keys[0]), np.sort(keys[1])
    t = np.asarray(t, dtype=np.float64)
    return np.searchsorted(g, t, side="right") + (d.size - np.searchsorted(d, t, side="right"))


def best_threshold(good_keys: np.ndarray, defect_keys: np.ndarray,
                   tie_breakers: tuple[KeyPair, ...] = ()) -> ThresholdChoice:
    """The t maximising #{good: key <= t} + #{defect: key > t}, ties broken in order.

    Ties on the primary count go to the finer levels in ``tie_breakers`` (e.g.
    strip accuracy when tuning for products, whose count moves in coarse
    steps), then to the LOWEST threshold. Candidates are every finite key plus
    one just below the smallest. A good key of +inf is never satisfied, a defect
    key of +inf always is, a defect key of -inf never is.
    """
    levels = [(np.asarray(good_keys, np.float64), np.asarray(defect_keys, np.float64)), *tie_breakers]
    finite = np.concatenate([k[np.isfinite(k)] for pair in levels for k in pair])
    total = levels[0][0].size + levels[0][1].size
    if finite.size == 0:
        # Nothing a threshold can change: keep 0 (rejects anything that scores at all).
        return ThresholdChoice(0.0, tuple(int(count_correct(p, np.array([0.0]))[0]) for p in levels), total)
    values = np.unique(finite)
    candidates = np.r_[np.nextafter(values[0], -np.inf), values]
    best = np.arange(candidates.size)
    counts = [count_correct(pair, candidates) for pair in levels]
    for c in counts:
        best = best[c[best] == c[best].max()]
    i = int(best[0])  # lowest among the lexicographic maxima
    return ThresholdChoice(float(candidates[i]), tuple(int(c[i]) for c in counts), total)



def coordinate_descent(start: RegionThresholds, keys_for: KeysFor) -> tuple[RegionThresholds, int]:
    """Re-tune one region at a time until a whole round moves nothing; (thresholds, rounds).

    A region's threshold moves on a lexicographic gain (its level, then the
    tie-breaking levels), or at an exact tie downwards; the accuracy never
    drops, the objective takes finitely many values, so the search ends.
    """
    t = start.as_array().copy()
    for rounds in range(1, MAX_ROUNDS + 1):
        moved = False
        for r in range(t.size):
            levels = keys_for(t, r)
            choice = best_threshold(*levels[0], tie_breakers=tuple(levels[1:]))
            held = tuple(int(count_correct(pair, np.array([t[r]]))[0]) for pair in levels)
            if choice.correct > held or (choice.correct == held and choice.threshold < t[r]):
                moved = True
                t[r] = choice.threshold
        if not moved:
            return RegionThresholds(*t.tolist()), rounds
    return RegionThresholds(*t.tolist()), MAX_ROUNDS
