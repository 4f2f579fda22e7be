"""Evaluation on a held-out kit, ROC/AUROC and the report files."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from tests.unit.synthetic_scores import synthetic_kit
from trainer import paper_figures as paper
from trainer.calibrate import calibrate
from trainer.evaluate import evaluate, strip_scores, vial_counts
from trainer.metrics import auroc, roc_curve
from trainer.report import write_report
from trainer.scoring import ScoredSet
from vialguard.calibration import Calibration
from vialguard.decision import RegionThresholds, RunPolicy
from vialguard.inspector_io import REPORT_JSON_FILENAME, REPORT_MD_FILENAME, ROC_PNG_FILENAME
from vialguard.recipe import REGION_IDS, load_recipe

RECIPE = load_recipe()


def _pairwise_auroc(scores: np.ndarray, defective: np.ndarray) -> float:
    d, g = scores[defective], scores[~defective]
    wins = (d[:, None] > g[None, :]).sum() + 0.5 * (d[:, None] == g[None, :]).sum()
    return float(wins / (d.size * g.size))


@pytest.mark.parametrize("seed", range(6))
def test_auroc_equals_pair_count_and_roc_area_with_ties(seed: int) -> None:
    rng = np.random.default_rng(seed)
    n = int(rng.integers(5, 80))
    defective = rng.random(n) < 0.4
    defective[:2] = [True, False]
    scores = np.round(rng.normal(0, 1, n) + defective * rng.uniform(0, 2), 1)  # ties on purpose
    expected = _pairwise_auroc(scores, defective)
    assert auroc(scores, defective) == pytest.approx(expected, abs=1e-12)
    curve = roc_curve(scores, defective)
    area = float(np.sum(np.diff(curve.false_reject_rate) * (curve.detection_rate[1:] + curve.detection_rate[:-1]) / 2))
    assert area == pytest.approx(expected, abs=1e-12)
    assert curve.false_reject_rate[0] == 0 and curve.false_reject_rate[-1] == 1 and curve.detection_rate[-1] == 1


def test_auroc_without_one_class_is_nan() -> None:
    assert np.isnan(auroc(np.array([0.1, 0.2]), np.array([False, False])))


def _calibration(patch: RegionThresholds, strip: RegionThresholds, run: RegionThresholds,
                 policy: RunPolicy = RunPolicy()) -> Calibration:
    return Calibration(profile="tiny", patch_size=32, recipe_id=RECIPE.id, recipe_digest=RECIPE.digest(),
                       training_data_digest="sha256:test", thresholds={"patch": patch, "strip": strip, "run": run},
                       run_policy=policy)


def _one_patch_per_run(products: dict[str, tuple[bool, list[float]]]) -> ScoredSet:
    """Each run is one acquisition with one R0 patch of the given score."""
    rows = [(pid, run, score, defective) for pid, (defective, scores) in products.items()
            for run, score in enumerate(scores)]
    return ScoredSet.from_columns(
        [r[2] for r in rows], region=[0] * len(rows), vial=[0] * len(rows), frame=[0] * len(rows),
        acquisition_id=[f"{r[0]}-{r[1]}" for r in rows], product_id=[r[0] for r in rows],
        run_index=[r[1] for r in rows], patch_defective=[r[3] for r in rows],
        acquisition_defective=[r[3] for r in rows])


def test_run_policy_counts_a_product_right_only_when_k_of_its_n_runs_agree() -> None:
    over, under = 0.9, 0.1  # threshold 0.5: over -> rejected
    kit = _one_patch_per_run({
        "good-7-accepts": (False, [under] * 7 + [over] * 3),      # right
        "good-6-accepts": (False, [under] * 6 + [over] * 4),      # wrong
        "bad-7-rejects": (True, [over] * 7 + [under] * 3),        # right
        "bad-6-rejects": (True, [over] * 6 + [under] * 4),        # wrong
        "bad-10-rejects": (True, [over] * 10),                    # right
    })
    t = RegionThresholds(0.5, 0.5, 0.5, 0.5)
    ev = evaluate(kit, _calibration(t, t, t))
    run = ev.per_run
    assert (run.n_good, run.good_accepted, run.n_defective, run.defects_rejected) == (2, 1, 3, 2)
    assert run.accuracy == pytest.approx(3 / 5)
    strip = ev.per_strip  # every run judged alone
    assert (strip.n_good, strip.good_accepted, strip.n_defective, strip.defects_rejected) == (20, 13, 30, 23)


def test_report_warns_when_products_have_fewer_runs_than_k(tmp_path: Path) -> None:
    kit = synthetic_kit(n_good=3, n_defective=3, runs=2, seed=8)
    t = RegionThresholds(0.03, 0.05, 0.06, 0.04)
    ev = evaluate(kit, _calibration(t, t, t))
    assert ev.kit["min_runs_per_product"] == 2
    write_report(ev, tmp_path)
    assert "fewer than k = 7" in (tmp_path / REPORT_MD_FILENAME).read_text()


def test_vial_is_rejected_when_any_of_its_region_patches_is_over() -> None:
    # One acquisition of a defective product: vial 0 has the defect in R1 (missed) and R2 over by noise.
    kit = ScoredSet.from_columns(
        [0.1, 0.1, 0.9, 0.1, 0.1, 0.1, 0.1, 0.1], region=[0, 1, 2, 3, 0, 1, 2, 3], vial=[0] * 4 + [1] * 4,
        frame=[0] * 8, acquisition_id=["a"] * 8, product_id=["p"] * 8, run_index=[0] * 8,
        patch_defective=[False, True, False, False] + [False] * 4, acquisition_defective=[True] * 8)
    counts = vial_counts(kit, RegionThresholds(0.5, 0.5, 0.5, 0.5))
    # vial 0 counts (it holds the defect) and is rejected; vial 1 of a defective product is neither.
    assert (counts.n_defective, counts.defects_rejected, counts.n_good) == (1, 1, 0)


def test_strip_score_is_above_one_exactly_when_eq13_rejects() -> None:
    kit = synthetic_kit(n_good=4, n_defective=4, runs=3, seed=4)
    t = RegionThresholds(0.025, 0.05, 0.058, 0.04)
    _, normalised, plain = strip_scores(kit, t)
    from trainer.evaluate import strip_decisions

    _, rejected = strip_decisions(kit, t)
    assert np.array_equal(normalised > 1.0, rejected)
    assert 0 < rejected.sum() < rejected.size
    assert np.all(plain >= 0)


@pytest.fixture(scope="module")
def report_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    cal = calibrate(synthetic_kit(seed=1), profile="tiny", patch_size=32, recipe=RECIPE,
                    training_data_digest="sha256:test")
    ev = evaluate(synthetic_kit(seed=2), cal)
    out = tmp_path_factory.mktemp("report")
    files = write_report(ev, out, title="test version")
    assert set(files) == {REPORT_MD_FILENAME, REPORT_JSON_FILENAME, ROC_PNG_FILENAME}
    return out


def test_report_markdown_names_rates_plainly_beside_the_papers_figures(report_dir: Path) -> None:
    md = (report_dir / REPORT_MD_FILENAME).read_text()
    for needle in ("good accepted (paper TPR)", "defects rejected (paper TNR)", "paper accuracy",
                   f"{paper.TABLE1_PER_REGION['R0']['accuracy']:.4f}", f"{paper.TABLE2_PER_STRIP['accuracy']:.4f}",
                   f"{paper.TABLE3_PER_RUN['accuracy']:.4f}", "ms/patch", "AUROC", ROC_PNG_FILENAME):
        assert needle in md, needle
    assert md.count("| R") >= 4


def test_report_json_holds_tables_1_to_3_roc_and_paper(report_dir: Path) -> None:
    data = json.loads((report_dir / REPORT_JSON_FILENAME).read_text())
    for rid in REGION_IDS:
        row = data["table1_per_region"][rid]
        assert {"threshold", "accuracy", "good_accepted_rate", "defects_rejected_rate", "ms_per_patch"} <= set(row)
        assert 0.0 <= row["accuracy"] <= 1.0
        if row["n_defective"]:
            assert 0.5 <= data["roc"][rid]["auroc"] <= 1.0
        else:
            assert data["roc"][rid]["auroc"] is None
    assert sum(data["table1_per_region"][rid]["n_defective"] > 0 for rid in REGION_IDS) >= 2
    assert set(data["table2_per_strip"]["thresholds"]) == set(REGION_IDS)
    assert data["table3_per_run"]["run_policy"] == {"k": 7, "n": 10}
    assert data["paper"]["table3_per_run"]["accuracy"] == paper.TABLE3_PER_RUN["accuracy"]
    assert "positive = GOOD" in data["convention"]


def test_roc_plot_is_a_png(report_dir: Path) -> None:
    data = (report_dir / ROC_PNG_FILENAME).read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 5000


def test_report_json_stays_valid_json_when_a_region_has_no_defects(tmp_path: Path) -> None:
    kit = synthetic_kit(n_good=3, n_defective=3, runs=2, seed=6)
    kit = ScoredSet.from_columns(kit.scores, **{k: getattr(kit, k) for k in (
        "region", "vial", "frame", "acquisition_id", "product_id", "run_index", "acquisition_defective")},
        patch_defective=kit.patch_defective & (kit.region != 3))
    t = RegionThresholds(0.03, 0.05, 0.06, 0.04)
    write_report(evaluate(kit, _calibration(t, t, t)), tmp_path)
    text = (tmp_path / REPORT_JSON_FILENAME).read_text()
    data = json.loads(text, parse_constant=lambda c: pytest.fail(f"non-JSON constant {c}"))
    assert data["roc"]["R3"]["auroc"] is None
    assert data["table1_per_region"]["R3"]["defects_rejected_rate"] is None
