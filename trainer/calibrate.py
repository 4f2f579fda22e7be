"""Per-region thresholds that maximise accuracy, as in the paper's Tables 1-3.

Three threshold sets, each tuned for the rule it will be judged by:

- ``patch`` (Table 1): per region, the threshold on phi that maximises patch
  accuracy. Defective patches are those that contain the defect; good patches
  come from good products only (a clean patch of a defective strip is neither).
- ``strip`` (Table 2): re-tuned for eq. 13 (an acquisition is rejected when any
  patch scores above its region's threshold) by coordinate descent over the 4
  thresholds, starting from the ``patch`` set.
- ``run`` (Table 3): re-tuned the same way for the k-of-n run policy (a product
  is correctly classified when >= k of its runs agree with its label).

Which set serves. The run-level re-tuning moves thresholds on a few dozen products
and can learn the kit instead of the product (measured: version 2's run thresholds,
re-tuned on 8 + 8 products, rejected every good product of a new kit). So ``run``
serves only when it beats ``strip`` under cross-validation over the calibration
kit's products (each fold calibrated on the others, judged on itself); otherwise
``strip`` serves. And a set that rejects every good product of the calibration kit
at the run level is never served: a version that stops the line is refused.

Every step reduces to an exact 1-D search over the observed scores
(trainer.threshold_search); this module says, for each level, which items
count and what their keys are.

Tie-break. Products are few, so product accuracy is flat over wide ranges of
a threshold; picking blindly inside such a plateau can wreck strip accuracy.
So equal accuracy goes to the finer level (run -> strip -> patch), and only
an exact tie on every level goes to the LOWEST threshold: a wrong accept can
reach a patient, a wrong reject costs a vial, and at equal accuracy the lower
threshold rejects at least as many defects. Coordinate descent moves a
threshold only on a (lexicographic) gain or, on an exact tie, downwards, so it
ends, is deterministic and never lowers the accuracy of its starting point.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

import numpy as np

from trainer.metrics import DecisionCounts
from trainer.scoring import ScoredSet
from trainer.threshold_search import KeyPair, best_threshold, coordinate_descent
from vialguard.calibration import Calibration
from vialguard.decision import RegionThresholds, RunPolicy
from vialguard.errors import CalibrationError
from vialguard.recipe import REGION_IDS, Recipe

log = logging.getLogger(__name__)
N_REGIONS = len(REGION_IDS)


# --- patch level (Table 1) -------------------------------------------------------------

def patch_level_mask(scored: ScoredSet) -> np.ndarray:
    """Patches that count at patch level: defective patches and patches of good products."""
    return scored.patch_defective | ~scored.acquisition_defective


def calibrate_patch(scored: ScoredSet) -> RegionThresholds:
    """Per region, the threshold maximising patch accuracy (Table 1)."""
    use = patch_level_mask(scored)
    thresholds = []
    for r, rid in enumerate(REGION_IDS):
        in_region = use & (scored.region == r)
        good = scored.scores[in_region & ~scored.patch_defective]
        if good.size == 0:
            raise CalibrationError(
                f"region {rid} has no good patches in the calibration set: cannot place its threshold; "
                "add good products to the calibration kit"
            )
        thresholds.append(best_threshold(good, scored.scores[in_region & scored.patch_defective]).threshold)
    return RegionThresholds(*thresholds)


# --- acquisition-level view ------------------------------------------------------------

@dataclass(frozen=True)
class AcquisitionTable:
    """Per acquisition: the max score in each region, label and product."""

    region_max: np.ndarray   # float64 [A, 4]; -inf where a region has no patch
    defective: np.ndarray    # bool [A]
    product: np.ndarray      # int [A], index into product ids
    product_ids: np.ndarray  # str [P]

    def rejected(self, thresholds: np.ndarray) -> np.ndarray:
        """Eq. 13 for every acquisition: any region max above its threshold."""
        return (self.region_max > thresholds[None, :]).any(axis=1)


def acquisition_table(scored: ScoredSet) -> AcquisitionTable:
    ids, acq = scored.acquisitions()
    region_max = np.full((ids.size, N_REGIONS), -np.inf)
    np.maximum.at(region_max, (acq, scored.region), scored.scores)
    defective = np.zeros(ids.size, dtype=bool)
    defective[acq] = scored.acquisition_defective
    if (defective[acq] != scored.acquisition_defective).any():
        raise CalibrationError("an acquisition carries both labels (good and defective) on its patches")
    first = np.zeros(ids.size, dtype=np.int64)
    first[acq[::-1]] = np.arange(scored.n)[::-1]
    product_ids, product = np.unique(scored.product_id[first], return_inverse=True)
    for p in range(product_ids.size):
        labels = defective[product == p]
        if labels.any() != labels.all():
            raise CalibrationError(f"product '{product_ids[p]}' is labelled good in some runs and defective in others")
    return AcquisitionTable(region_max, defective, product, product_ids)


def _others_reject(table: AcquisitionTable, t: np.ndarray, r: int) -> np.ndarray:
    others = np.delete(np.arange(N_REGIONS), r)
    return (table.region_max[:, others] > t[None, others]).any(axis=1)


def strip_keys(table: AcquisitionTable, t: np.ndarray, r: int) -> tuple[np.ndarray, np.ndarray]:
    """1-D keys of every acquisition for region r's threshold, the others fixed."""
    key = np.where(_others_reject(table, t, r), np.inf, table.region_max[:, r])
    return key[~table.defective], key[table.defective]


def run_keys(table: AcquisitionTable, t: np.ndarray, r: int, policy: RunPolicy) -> tuple[np.ndarray, np.ndarray]:
    """1-D keys of every product for region r's threshold under the k-of-n policy.

    A good product is right when >= k runs accept: t >= the k-th smallest region
    max among its runs the other regions do not already reject. A defective one
    is right when >= k runs reject, i.e. at most (runs - k) accept: t < the
    (runs - k + 1)-th smallest of those maxima.
    """
    free = ~_others_reject(table, t, r)
    order = np.lexsort((table.region_max[:, r], ~free, table.product))
    good_keys, defect_keys = [], []
    bounds = np.searchsorted(table.product[order], np.arange(table.product_ids.size + 1))
    for p in range(table.product_ids.size):
        rows = order[bounds[p]:bounds[p + 1]]
        vals = table.region_max[rows[free[rows]], r]  # sorted ascending
        if table.defective[rows[0]]:
            allowed = rows.size - policy.k  # accepts tolerated
            key = -np.inf if allowed < 0 else (np.inf if vals.size <= allowed else vals[allowed])
            defect_keys.append(key)
        else:
            good_keys.append(vals[policy.k - 1] if vals.size >= policy.k else np.inf)
    return np.array(good_keys, dtype=np.float64), np.array(defect_keys, dtype=np.float64)


def patch_keys(scored: ScoredSet) -> list[KeyPair]:
    """Per region, the patch-level 1-D problem (the last tie-breaker of the re-tunings)."""
    use = patch_level_mask(scored)
    return [(scored.scores[use & (scored.region == r) & ~scored.patch_defective],
             scored.scores[use & (scored.region == r) & scored.patch_defective]) for r in range(N_REGIONS)]


def calibrate_strip(table: AcquisitionTable, start: RegionThresholds,
                    patch_level: list[KeyPair]) -> tuple[RegionThresholds, int]:
    """Thresholds re-tuned for eq. 13 (Table 2), from ``start``; ties go to patch accuracy."""
    return coordinate_descent(start, lambda t, r: [strip_keys(table, t, r), patch_level[r]])


def calibrate_run(table: AcquisitionTable, start: RegionThresholds, policy: RunPolicy,
                  patch_level: list[KeyPair]) -> tuple[RegionThresholds, int]:
    """Thresholds re-tuned for the k-of-n run policy (Table 3), from ``start``.

    Product counts move in coarse steps, so ties go to strip accuracy, then to
    patch accuracy, then to the lower threshold.
    """
    return coordinate_descent(
        start, lambda t, r: [run_keys(table, t, r, policy), strip_keys(table, t, r), patch_level[r]])


# --- metrics on the calibration set -----------------------------------------------------

def patch_counts(scored: ScoredSet, thresholds: RegionThresholds) -> dict[str, DecisionCounts]:
    use = patch_level_mask(scored)
    rejected = scored.scores > thresholds.as_array()[scored.region]
    return {rid: DecisionCounts.from_decisions(scored.patch_defective[use & (scored.region == r)],
                                               rejected[use & (scored.region == r)])
            for r, rid in enumerate(REGION_IDS)}


def product_counts(table: AcquisitionTable, rejected: np.ndarray, policy: RunPolicy) -> DecisionCounts:
    """Product-level counts with RunPolicy.correctly_classified (paper's validation criterion)."""
    n_products = table.product_ids.size
    rejects = np.bincount(table.product, weights=rejected, minlength=n_products).astype(int)
    runs = np.bincount(table.product, minlength=n_products)
    defective = np.zeros(n_products, dtype=bool)
    defective[table.product] = table.defective
    right = np.array([policy.correctly_classified(not defective[p], int(runs[p] - rejects[p]), int(rejects[p]))
                      for p in range(n_products)], dtype=bool)
    # Express "right" as decisions: a product is "rejected" when it is defective and right, or good and wrong.
    return DecisionCounts.from_decisions(defective, defective == right)


def threshold_sets(scored: ScoredSet, run_policy: RunPolicy) -> tuple[dict[str, RegionThresholds], dict[str, int]]:
    """patch -> strip -> run thresholds on one scored set, and the coordinate-descent rounds."""
    patch = calibrate_patch(scored)
    table = acquisition_table(scored)
    patch_level = patch_keys(scored)
    strip, strip_rounds = calibrate_strip(table, patch, patch_level)
    run, run_rounds = calibrate_run(table, strip, run_policy, patch_level)
    return {"patch": patch, "strip": strip, "run": run}, {"strip": strip_rounds, "run": run_rounds}


def _subset(scored: ScoredSet, keep: np.ndarray) -> ScoredSet:
    return ScoredSet.from_columns(
        scored.scores[keep], region=scored.region[keep], vial=scored.vial[keep], frame=scored.frame[keep],
        acquisition_id=scored.acquisition_id[keep], product_id=scored.product_id[keep],
        run_index=scored.run_index[keep], patch_defective=scored.patch_defective[keep],
        acquisition_defective=scored.acquisition_defective[keep], runtime=scored.runtime)


def cross_validate_run_level(scored: ScoredSet, run_policy: RunPolicy, folds: int = 4) -> dict[str, Any]:
    """Products right under each held-out fold with its own strip vs run thresholds.

    Folds deal good and defective products round-robin, so each fold has both;
    a fold whose training part lacks defects or goods is skipped.
    """
    products, index = np.unique(scored.product_id, return_inverse=True)
    defective = np.zeros(products.size, dtype=bool)
    defective[index] = scored.acquisition_defective
    fold = np.zeros(products.size, dtype=np.int64)
    for label in (False, True):
        members = np.nonzero(defective == label)[0]
        fold[members] = np.arange(members.size) % folds
    right = {"strip": 0, "run": 0}
    judged, used = 0, 0
    for f in range(folds):
        held = fold[index] == f
        train = _subset(scored, ~held)
        if not held.any() or train.acquisition_defective.all() or not train.acquisition_defective.any():
            continue
        sets, _ = threshold_sets(train, run_policy)
        test = _subset(scored, held)
        table = acquisition_table(test)
        for name in right:
            counts = product_counts(table, table.rejected(sets[name].as_array()), run_policy)
            right[name] += counts.good_accepted + counts.defects_rejected
        judged += int(table.product_ids.size)
        used += 1
    return {"folds": used, "products_judged": judged, "right": right,
            "accuracy": {k: (v / judged if judged else float("nan")) for k, v in right.items()}}


def choose_serving(sets: dict[str, RegionThresholds], table: AcquisitionTable, cv: dict[str, Any],
                   run_policy: RunPolicy) -> str:
    """``run`` when it won the cross-validation, else ``strip``; never a set that rejects every good product."""
    preferred = "run" if cv["folds"] and cv["right"]["run"] > cv["right"]["strip"] else "strip"
    judge_products = int(np.bincount(table.product).min()) >= run_policy.k  # else no good product can pass
    for name in (preferred, "strip" if preferred == "run" else "run"):
        rejected = table.rejected(sets[name].as_array())
        strips = DecisionCounts.from_decisions(table.defective, rejected)
        products = product_counts(table, rejected, run_policy)
        stops_line = (strips.n_good > 0 and strips.good_accepted == 0) or \
            (judge_products and products.n_good > 0 and products.good_accepted == 0)
        if not stops_line:
            return name
        log.warning("the %s thresholds reject every good strip or product of the calibration kit: not served", name)
    raise CalibrationError("every threshold set rejects every good product of the calibration kit: the model "
                           "cannot tell good from defective here, and such a version would stop the line; "
                           "refusing to calibrate it")


def calibrate(
    scored: ScoredSet,
    *,
    profile: str,
    patch_size: int,
    recipe: Recipe,
    training_data_digest: str,
    run_policy: RunPolicy = RunPolicy(),
    score: str = "phi",
    cv_folds: int = 4,
) -> Calibration:
    """All three threshold sets on ``score`` and their calibration-set metrics; see the module docstring
    for which set serves."""
    if scored.n == 0:
        raise CalibrationError("the calibration set is empty")
    if not scored.acquisition_defective.any():
        raise CalibrationError("the calibration set has no defective product: thresholds would only "
                               "ever move up; add the defect kit to the calibration set")
    table = acquisition_table(scored)
    min_runs = int(np.bincount(table.product).min())
    if min_runs < run_policy.k:
        log.warning("some calibration products have only %d runs, fewer than k=%d: the run-level re-tuning "
                    "cannot classify them right and falls back on strip accuracy", min_runs, run_policy.k)
    sets, rounds = threshold_sets(scored, run_policy)
    cv = cross_validate_run_level(scored, run_policy, cv_folds)
    serving = choose_serving(sets, table, cv, run_policy)
    log.info("run-level cross-validation %s: serving the %s thresholds", cv["accuracy"], serving)
    metrics: dict[str, object] = {
        "calibration_set": {"patches": scored.n, "acquisitions": int(table.defective.size),
                            "products": int(table.product_ids.size),
                            "defective_products": int(len(set(table.product[table.defective].tolist()))),
                            "min_runs_per_product": min_runs},
        "tie_break": ("equal accuracy: finer level decides (run -> strip -> patch), then the lowest "
                      "threshold, which rejects at least as many defects"),
        "coordinate_descent_rounds": rounds,
        "run_level_cross_validation": cv,
        "serving_choice": (f"'{serving}' serves: the run-level re-tuning is adopted only when it beats the strip "
                           "thresholds under cross-validation over the calibration products"),
    }
    for name, t in sets.items():
        rejected = table.rejected(t.as_array())
        metrics[name] = {
            "patch": {rid: c.as_dict() for rid, c in patch_counts(scored, t).items()},
            "strip": DecisionCounts.from_decisions(table.defective, rejected).as_dict(),
            "run": product_counts(table, rejected, run_policy).as_dict(),
        }
    return Calibration(
        profile=profile, patch_size=int(patch_size), recipe_id=recipe.id, recipe_digest=recipe.digest(),
        training_data_digest=training_data_digest, thresholds=sets, serving=serving, run_policy=run_policy,
        score=score,
        metrics=metrics, created_utc=datetime.now(timezone.utc).isoformat(timespec="seconds"),
    )
