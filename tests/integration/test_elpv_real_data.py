"""Real-data check on elpv solar cells: train on good cells, calibrate, test on held-out cells.

Slow (minutes of GAN training on a CPU) and needs ``pip install -r requirements/elpv.txt``.
Run: ``.venv/bin/python -m pytest -m slow tests/integration/test_elpv_real_data.py -q``.
It asserts better-than-chance separation, not the figures, which are written to
the report for reading.
"""
from __future__ import annotations

import importlib.util
import json
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np
import pytest

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(importlib.util.find_spec("elpv_dataset") is None,
                       reason="elpv-dataset is not installed: pip install -r requirements/elpv.txt"),
]


def test_splits_are_disjoint_and_defects_are_rated_two_thirds_or_more():
    from trainer.elpv_check import ElpvSettings, load_elpv, split_cells

    images, probs, _ = load_elpv()
    assert images.shape[1:] == (300, 300) and images.dtype == np.uint8
    split = split_cells(probs, ElpvSettings())
    seen = np.concatenate(list(split.values()))
    assert seen.size == np.unique(seen).size
    assert (probs[np.r_[split["train"], split["test_good"], split["calibration_good"]]] == 0).all()
    assert (probs[np.r_[split["test_defect"], split["calibration_defect"]]] >= 0.66).all()


def test_gan_trained_on_good_cells_separates_held_out_defects(tmp_path):
    from trainer.cli import main

    out = tmp_path / "elpv"
    assert main(["elpv", "--out", str(out), "--epochs", "2", "--steps", "120"]) == 0
    report = json.loads((out / "elpv_report.json").read_text())
    test = report["test"]
    counts = test["per_type_thresholds"]
    assert counts["n_good"] == 250 and counts["n_defective"] > 500
    assert report["calibration"]["pooled_threshold"]["n_good"] == 150
    assert report["calibration"]["pooled_threshold"]["n_defective"] == 150
    assert set(report["thresholds"]["per_type"]) == {"mono", "poly"}
    # Measured (256 px, local score with the line's statistics, 2 cores): the default 16 x 250 steps gave
    # test AUROC 0.78 (mono cells 0.85, poly 0.73), phi on the same cells 0.63, balanced accuracy 0.71;
    # 4 x 150 steps 0.69 (poly 0.53: their grain is not learnt in so few steps). This test trains 2 x 120
    # steps to stay short, so it asserts only better than chance. (64 px, phi, the earlier method: 0.56.)
    assert "phi" in report and report["score"].startswith("local")
    assert test["auroc"] > 0.5, report
    assert test["auroc_by_type"]["mono"] > 0.65, report
    assert counts["balanced_accuracy"] > 0.5, report
    assert (out / "elpv_report.md").read_text().count("|") > 20
