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
