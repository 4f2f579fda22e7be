"""Calibration: thresholds that maximise accuracy at patch, strip and run level."""
from __future__ import annotations

import numpy as np
import pytest

from tests.unit.synthetic_scores import synthetic_kit
from trainer.calibrate import (
    acquisition_table,
    calibrate,
    calibrate_patch,
    choose_serving,
    cross_validate_run_level,
    patch_counts,
    patch_level_mask,
    product_counts,
)
from trainer.evaluate import strip_decisions
from trainer.metrics import DecisionCounts
from trainer.scoring import ScoredSet
from trainer.threshold_search import best_threshold
from vialguard.decision import RegionThresholds, RunPolicy
from vialguard.errors import CalibrationError
from vialguard.recipe import REGION_IDS, load_recipe

RECIPE = load_recipe()


def _calibrate(kit: ScoredSet, policy: RunPolicy = RunPolicy()):
    return calibrate(kit, profile="tiny", patch_size=32, recipe=RECIPE, training_data_digest="sha256:test",
                     run_policy=policy)


def _brute_force(good: np.ndarray, defect: np.ndarray) -> tuple[int, float]:
    """Best #correct over every threshold that can matter, and the lowest t reaching it."""
    values = np.unique(np.r_[good, defect])
    candidates = np.r_[values[0] - 1.0, values, (values[:-1] + values[1:]) / 2, values[-1] + 1.0]
    correct = [int((good <= t).sum() + (defect > t).sum()) for t in candidates]
    best = max(correct)
    return best, min(t for t, c in zip(candidates, correct) if c == best)


@pytest.mark.parametrize("seed", range(12))
def test_patch_threshold_maximises_accuracy_like_brute_force_on_overlapping_scores(seed: int) -> None:
    rng = np.random.default_rng(seed)
    good = np.round(rng.normal(0.03, 0.01, rng.integers(1, 40)), 3)  # rounding makes ties
    defect = np.round(rng.normal(0.04, 0.01, rng.integers(0, 25)), 3)
    choice = best_threshold(good, defect)
    best, lowest = _brute_force(good, defect)
    assert choice.correct[0] == best
    assert choice.threshold <= lowest + 1e-12  # no lower threshold is as accurate
    assert choice.correct[0] == int((good <= choice.threshold).sum() + (defect > choice.threshold).sum())


def test_separable_scores_give_full_accuracy_with_threshold_at_the_worst_good() -> None:
    good = np.array([0.010, 0.012, 0.020])
    defect = np.array([0.05, 0.08])
    choice = best_threshold(good, defect)
    assert choice.accuracy == 1.0
    assert choice.threshold == good.max()


def test_equal_accuracy_goes_to_the_lower_threshold_that_rejects_more_defects() -> None:
    # t = 1 and t = 3 both get 3 of 4 right; 1 rejects both defects.
    choice = best_threshold(np.array([1.0, 3.0]), np.array([2.0, 4.0]))
    assert choice.correct[0] == 3
    assert choice.threshold == 1.0


def test_a_region_without_defects_accepts_all_its_good_patches() -> None:
    choice = best_threshold(np.array([0.1, 0.3, 0.2]), np.array([]))
    assert choice.threshold == 0.3 and choice.accuracy == 1.0


def test_patch_calibration_solves_each_region_on_defective_patches_and_good_products() -> None:
    kit = synthetic_kit(n_good=6, n_defective=6, runs=3, seed=3)
    thresholds = calibrate_patch(kit).as_array()
    use = patch_level_mask(kit)
    for r in range(4):
        rows = use & (kit.region == r)
        best, _ = _brute_force(kit.scores[rows & ~kit.patch_defective], kit.scores[rows & kit.patch_defective])
        got = patch_counts(kit, RegionThresholds(*thresholds))[REGION_IDS[r]]
        assert got.good_accepted + got.defects_rejected == best


def _strip_accuracy(kit: ScoredSet, t: RegionThresholds) -> float:
    defective, rejected = strip_decisions(kit, t)
    return DecisionCounts.from_decisions(defective, rejected).accuracy


def _run_accuracy(kit: ScoredSet, t: RegionThresholds, policy: RunPolicy) -> float:
    table = acquisition_table(kit)
    return product_counts(table, strip_decisions(kit, t)[1], policy).accuracy


@pytest.mark.parametrize("seed", range(4))
def test_strip_retuning_never_lowers_strip_accuracy_and_run_retuning_never_lowers_run_accuracy(seed: int) -> None:
    kit = synthetic_kit(n_good=10, n_defective=10, runs=10, separation=0.012, seed=seed)
    cal = _calibrate(kit)
    patch, strip, run = (cal.thresholds[k] for k in ("patch", "strip", "run"))
    assert _strip_accuracy(kit, strip) >= _strip_accuracy(kit, patch)
    assert _run_accuracy(kit, run, cal.run_policy) >= _run_accuracy(kit, strip, cal.run_policy)
    assert cal.metrics["strip"]["strip"]["accuracy"] == pytest.approx(_strip_accuracy(kit, strip))
    cv = cal.metrics["run_level_cross_validation"]
    wins = cv["right"]["run"] > cv["right"]["strip"]
    assert cal.serving == ("run" if wins else "strip") and cal.serving_thresholds == cal.thresholds[cal.serving]


@pytest.mark.parametrize("level", ["strip", "run"])
def test_retuned_thresholds_cannot_be_beaten_by_moving_one_region(level: str) -> None:
    """Coordinate-wise optimum, checked against brute force with the real decision rules."""
    policy = RunPolicy(k=3, n=4)
    kit = synthetic_kit(n_good=6, n_defective=6, runs=4, separation=0.01, seed=11)
    t = _calibrate(kit, policy).thresholds[level].as_array()
    measure = (lambda th: _strip_accuracy(kit, th)) if level == "strip" else (lambda th: _run_accuracy(kit, th, policy))
    reached = measure(RegionThresholds(*t))
    for r in range(4):
        values = np.unique(kit.scores[kit.region == r])
        for candidate in np.r_[values[0] - 1e-3, values[::7], values[-1]]:
            moved = t.copy()
            moved[r] = candidate
            assert measure(RegionThresholds(*moved)) <= reached + 1e-12


def test_calibration_is_deterministic() -> None:
    kit = synthetic_kit(n_good=5, n_defective=5, runs=10, seed=5)
    assert _calibrate(kit).thresholds == _calibrate(kit).thresholds


def test_vectorised_strip_rule_equals_decide_strip() -> None:
    kit = synthetic_kit(n_good=4, n_defective=4, runs=5, seed=9)
    t = calibrate_patch(kit)
    _, rejected = strip_decisions(kit, t)
    assert np.array_equal(acquisition_table(kit).rejected(t.as_array()), rejected)
    assert 0 < rejected.sum() < rejected.size


def test_region_without_good_patches_is_refused_with_a_clear_message() -> None:
    kit = synthetic_kit(n_good=2, n_defective=2, runs=2, seed=1)
    keep = ~((kit.region == 2) & ~kit.acquisition_defective) & ~((kit.region == 2) & ~kit.patch_defective)
    cols = {k: getattr(kit, k)[keep] for k in ("region", "vial", "frame", "acquisition_id", "product_id",
                                              "run_index", "patch_defective", "acquisition_defective")}
    with pytest.raises(CalibrationError, match="R2 has no good patches"):
        _calibrate(ScoredSet.from_columns(kit.scores[keep], **cols))


def test_calibration_without_defective_products_is_refused() -> None:
    kit = synthetic_kit(n_good=3, n_defective=0, runs=2)
    with pytest.raises(CalibrationError, match="no defective product"):
        _calibrate(kit)


def test_product_labelled_both_good_and_defective_is_refused() -> None:
    kit = synthetic_kit(n_good=2, n_defective=2, runs=2, seed=2)
    labels = kit.acquisition_defective.copy()
    labels[kit.acquisition_id == "P002-run00"] = False
    cols = {k: getattr(kit, k) for k in ("region", "vial", "frame", "acquisition_id", "product_id",
                                        "run_index", "patch_defective")}
    with pytest.raises(CalibrationError, match="P002"):
        _calibrate(ScoredSet.from_columns(kit.scores, **cols, acquisition_defective=labels))


def test_cross_validation_counts_every_product_once_and_reports_both_sets() -> None:
    kit = synthetic_kit(n_good=8, n_defective=8, runs=10, separation=0.012, seed=3)
    cv = cross_validate_run_level(kit, RunPolicy(), folds=4)
    assert cv["folds"] == 4 and cv["products_judged"] == 16
    assert set(cv["right"]) == {"strip", "run"} and all(0 <= v <= 16 for v in cv["right"].values())
    assert cv["accuracy"]["strip"] == pytest.approx(cv["right"]["strip"] / 16)


def test_a_threshold_set_that_rejects_every_good_product_is_never_served() -> None:
    kit = synthetic_kit(n_good=6, n_defective=6, runs=10, separation=0.02, seed=4)
    table = acquisition_table(kit)
    reject_all = RegionThresholds(-1.0, -1.0, -1.0, -1.0)
    sane = calibrate(kit, profile="t", patch_size=32, recipe=RECIPE, training_data_digest="d").thresholds["strip"]
    cv_run_wins = {"folds": 4, "right": {"strip": 0, "run": 12}}
    assert choose_serving({"run": reject_all, "strip": sane}, table, cv_run_wins, RunPolicy()) == "strip"
    with pytest.raises(CalibrationError, match="would stop the line"):
        choose_serving({"run": reject_all, "strip": reject_all}, table, cv_run_wins, RunPolicy())


def test_wilson_interval_is_honest_at_the_edges() -> None:
    from trainer.metrics import wilson_interval

    lo, hi = wilson_interval(20, 20)
    assert hi == 1.0 and 0.83 < lo < 0.84  # 20/20 is not "certainly 100 %"
    lo, hi = wilson_interval(0, 10)
    assert lo == 0.0 and 0.27 < hi < 0.28
    assert wilson_interval(0, 0) is None
    lo, hi = wilson_interval(50, 100)
    assert lo == pytest.approx(0.4038, abs=1e-3) and hi == pytest.approx(0.5962, abs=1e-3)
