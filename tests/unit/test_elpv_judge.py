"""The elpv check's judging: thresholds from the calibration split only, one per cell type."""
from __future__ import annotations

import numpy as np

from trainer.elpv_check import ElpvSettings, judge, split_cells


def _scores(rng: np.random.Generator, n: int) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """Poly cells score higher across the board (texture), defects higher within each type."""
    scores, types = {}, {}
    for split in ("calibration", "test"):
        for side, lift in (("good", 0.0), ("defect", 0.1)):
            kind = np.where(np.arange(n) % 2 == 0, "mono", "poly")
            scores[f"{split}_{side}"] = rng.normal(0.2, 0.03, n) + lift + np.where(kind == "poly", 0.3, 0.0)
            types[f"{split}_{side}"] = kind
    return scores, types


def test_thresholds_come_from_the_calibration_split_only():
    scores, types = _scores(np.random.default_rng(0), 200)
    first = judge(scores, types)
    scores["test_good"] = scores["test_good"] + 5.0  # a wrecked test split must not move a threshold
    second = judge(scores, types)
    assert first["thresholds"] == second["thresholds"]
    assert second["test"]["per_type_thresholds"]["good_accepted_rate"] == 0.0


def test_per_type_thresholds_beat_one_pooled_threshold_when_types_differ_in_level():
    scores, types = _scores(np.random.default_rng(1), 400)
    figures = judge(scores, types)
    per_type, pooled = figures["test"]["per_type_thresholds"], figures["test"]["pooled_threshold"]
    assert per_type["accuracy"] > pooled["accuracy"] + 0.1
    assert figures["test"]["auroc_normalised"] > figures["test"]["auroc"]
    assert figures["thresholds"]["per_type"]["poly"] > figures["thresholds"]["per_type"]["mono"]


def test_cell_splits_are_disjoint_and_hold_out_good_cells_from_training():
    probs = np.r_[np.zeros(1000), np.full(300, 1.0), np.full(100, 1 / 3), np.full(50, 2 / 3)]
    split = split_cells(probs, ElpvSettings())
    every = np.concatenate(list(split.values()))
    assert every.size == np.unique(every).size
    assert (probs[split["train"]] == 0).all() and split["train"].size == 1000 - 250 - 150 - 50
    assert (probs[split["test_defect"]] >= 2 / 3 - 1e-9).all() and split["test_defect"].size == 350 - 150
    assert not np.isin(np.flatnonzero(probs == 1 / 3), every).any()  # uncertain cells are left out


def _cell_maps(rng: np.random.Generator) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """1 - SSIM-like maps of 32 px cells: poly cells noisier than mono, test cells clean."""
    maps, types = {}, {}
    for name, n in (("calibration_good", 40), ("test_good", 4)):
        kind = np.where(np.arange(n) % 2 == 0, "mono", "poly")
        noise = np.where(kind == "poly", 0.05, 0.01)[:, None, None]
        maps[name] = (0.1 + noise * rng.standard_normal((n, 32, 32))).astype(np.float32)
        types[name] = kind
    return maps, types


def test_cells_are_scored_with_the_lines_smoothing_so_a_speck_weighs_less_than_a_blob():
    from trainer.elpv_check import scores_of_cells
    from vialguard.local_score import MAP_SSIM

    maps, types = _cell_maps(np.random.default_rng(2))
    clean = np.full((2, 32, 32), 0.1, np.float32)
    speck, blob = clean.copy(), clean.copy()
    speck[:, 16, 16] += 0.5            # one pixel: sensor noise on a real image
    blob[:, 12:21, 12:21] += 0.5       # 9 x 9 px at the same height: a defect
    maps["test_speck"], maps["test_blob"] = speck, blob
    types["test_speck"] = types["test_blob"] = np.array(["mono", "poly"])
    scores = scores_of_cells(maps, types, MAP_SSIM)
    assert (scores["test_blob"] > 3 * scores["test_speck"]).all(), scores
    # Each cell type is judged by its own good cells: the same blob is more unusual on quiet mono cells.
    assert scores["test_blob"][0] > scores["test_blob"][1], scores


def test_cross_validation_prefers_the_smoothing_that_separates_wide_faint_defects_from_calibration_cells_only():
    from trainer.elpv_check import smoothing_by_cross_validation
    from vialguard.local_score import MAP_SSIM

    rng = np.random.default_rng(3)
    good = (0.1 + 0.05 * rng.standard_normal((40, 48, 48))).astype(np.float32)
    defect = (0.1 + 0.05 * rng.standard_normal((20, 48, 48))).astype(np.float32)
    defect[:, 10:30, 10:30] += 0.04  # wide and faint: below the noise pixel by pixel
    maps = {"calibration_good": good, "calibration_defect": defect}  # no test split: it must not be read
    types = {"calibration_good": np.array(["mono", "poly"] * 20), "calibration_defect": np.array(["mono", "poly"] * 10)}
    cv = smoothing_by_cross_validation(maps, types, MAP_SSIM, candidates=(0.5, 4.0))
    assert set(cv) == {0.5, 4.0}
    assert cv[4.0] > cv[0.5] + 0.1, cv
