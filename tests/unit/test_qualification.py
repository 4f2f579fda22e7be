"""The qualification tables: detection by defect kind x severity and false rejects by region."""
from __future__ import annotations

from tests.unit.synthetic_scores import synthetic_kit
from trainer.qualification import (DefectTruth, detection_table, false_rejects_by_region, qualification_markdown,
                                   severity_band)
from vialguard.decision import RegionThresholds, RunPolicy


def test_severity_bands_cover_zero_to_one() -> None:
    assert [severity_band(s) for s in (0.0, 0.19, 0.2, 0.49, 0.5, 1.0)] == \
        ["< 0.2", "< 0.2", "0.2-0.5", "0.2-0.5", ">= 0.5", ">= 0.5"]


def test_detection_table_counts_acquisitions_and_products_per_kind_and_band() -> None:
    kit = synthetic_kit(n_good=2, n_defective=4, runs=10, separation=1.0, noise=0.0, seed=0)
    products = sorted(set(kit.product_id[kit.acquisition_defective]))
    defects = {products[0]: [DefectTruth("burn", 2, 0.1)], products[1]: [DefectTruth("burn", 2, 0.15)],
               products[2]: [DefectTruth("scratch", 1, 0.7)],
               products[3]: [DefectTruth("scratch", 1, 0.7), DefectTruth("foam", 2, 0.3)]}
    everything_rejected = RegionThresholds(-1, -1, -1, -1)
    rows = detection_table(kit, everything_rejected, RunPolicy(), defects)
    by_key = {(r["kind"], r["severity"]): r for r in rows}
    assert set(by_key) == {("burn", "< 0.2"), ("scratch", ">= 0.5"), ("foam", "0.2-0.5")}
    assert by_key[("burn", "< 0.2")]["products"]["n"] == 2 and by_key[("burn", "< 0.2")]["acquisitions"]["n"] == 20
    assert by_key[("scratch", ">= 0.5")]["products"]["rate"] == 1.0
    nothing_rejected = RegionThresholds(9, 9, 9, 9)
    rows = detection_table(kit, nothing_rejected, RunPolicy(), defects)
    assert all(r["acquisitions"]["detected"] == 0 and r["products"]["rate"] == 0.0 for r in rows)
    assert all(r["products"]["ci95"][1] > 0 for r in rows)  # 0 of n is not proven 0 %


def test_false_rejects_by_region_name_the_region_that_stops_good_strips() -> None:
    kit = synthetic_kit(n_good=5, n_defective=1, runs=10, separation=0.02, seed=1)
    only_r2_low = RegionThresholds(9, 9, -1, 9)
    frr = false_rejects_by_region(kit, only_r2_low)
    assert frr["R2"]["rate"] == 1.0 and frr["R0"]["rate"] == 0.0 and frr["strip"]["rate"] == 1.0
    assert frr["R2"]["n"] == 50  # good acquisitions only
    lines = qualification_markdown([], frr, {}, "local-fused")
    assert any(line.startswith("| R2 | 100.0 %") for line in lines)


def test_a_kit_without_ground_truth_gives_no_severity_rows() -> None:
    kit = synthetic_kit(n_good=2, n_defective=1, runs=2, seed=2)
    assert detection_table(kit, RegionThresholds(0, 0, 0, 0), RunPolicy(k=1, n=2), {}) == []
