"""The data behind the HMI's pages: grid colours, rates, product judgements, reject patches."""
from __future__ import annotations

import pytest

from hmi.views import cell_state, live_row, product_rows, product_summary, rates, reject_patches, strip_grid
from tests.unit.hmi_support import verdict
from vialguard.decision import RunPolicy
from vialguard_stack.demo_report import AcquisitionOutcome, product_outcomes


@pytest.mark.parametrize(("score", "threshold", "over", "state"), [
    (0.05, 0.1, False, "ok"), (0.079, 0.1, False, "ok"), (0.081, 0.1, False, "near"), (0.1, 0.1, False, "near"),
    (0.11, 0.1, True, "over"), (float("nan"), 0.1, True, "over"), (0.0, 0.1, True, "over"),
])
def test_cell_state_marks_over_near_and_ok(score: float, threshold: float, over: bool, state: str) -> None:
    assert cell_state(score, threshold, over) == state


def test_strip_grid_is_vials_by_regions_with_each_cells_worst_frame() -> None:
    v = verdict(over={(7, 2, 1): 0.35, (15, 2, 1): 0.25, (0, 4, 3): 0.38})
    grid = strip_grid(v)
    assert grid["vials"] == 5 and grid["regions"] == ["R0", "R1", "R2", "R3"]
    assert len(grid["cells"]) == 4 and all(len(row) == 5 for row in grid["cells"])
    cell = grid["cells"][1][2]
    assert (cell["frame"], cell["state"]) == (7, "over") and cell["margin"] == pytest.approx(0.15)
    assert grid["cells"][3][4]["state"] == "near"  # 0.38 of 0.40
    states = [c["state"] for row in grid["cells"] for c in row]
    assert states.count("over") == 1 and states.count("near") == 1 and states.count("ok") == 18


def test_rates_count_only_the_window_and_judge_a_young_line_over_its_own_span() -> None:
    now = 1_000_000
    vs = [verdict(f"A{i}", decided_at=now - 400_000) for i in range(5)]              # outside 300 s
    vs += [verdict(f"B{i}", decided_at=now - 60_000 + i * 1000) for i in range(9)]   # accepted, last minute
    vs += [verdict("C0", over={(0, 0, 0): 0.5}, decided_at=now - 30_000)]            # one reject
    r = rates(vs, now, 300)
    assert (r.verdicts, r.rejects) == (10, 1)
    assert r.reject_rate == pytest.approx(0.1)
    assert r.per_minute == pytest.approx(10.0)  # 10 verdicts over the 60 s since the first in the window
    assert rates([], now, 300).reject_rate is None


def test_product_rows_judge_like_the_demo_table_and_say_why() -> None:
    # Defective product: 5 of 10 runs rejected -> the line REJECTs it, but it is not correctly classified.
    latest = [verdict("P1-R09", "P1", 9, accepts=5, rejects=5, product_decision=2),
              verdict("P2-R09", "P2", 9, accepts=8, rejects=2, product_decision=1),
              verdict("P3-R02", "P3", 2, accepts=2, rejects=1)]
    labels = {"P1": "defective", "P2": "good", "P3": "good"}
    rows = {r["product_id"]: r for r in product_rows(latest, labels)}
    assert (rows["P1"]["product_verdict"], rows["P1"]["correct"]) == ("REJECT", False)
    assert "5 runs rejected it, 7 of 10 needed" in rows["P1"]["why"]
    assert (rows["P2"]["product_verdict"], rows["P2"]["correct"]) == ("ACCEPT", True)
    assert (rows["P3"]["product_verdict"], rows["P3"]["correct"]) == ("PENDING", None)
    demo = {p.product_id: p for p in product_outcomes(
        [_outcome("P1", "defective", "ACCEPT")] * 5 + [_outcome("P1", "defective", "REJECT")] * 5
        + [_outcome("P2", "good", "ACCEPT")] * 8 + [_outcome("P2", "good", "REJECT")] * 2, RunPolicy())}
    for pid in ("P1", "P2"):
        assert (demo[pid].verdict.value, demo[pid].correct, demo[pid].why) == (
            rows[pid]["product_verdict"], rows[pid]["correct"], rows[pid]["why"])
    summary = product_summary(list(rows.values()))
    assert (summary["judged"], summary["correct"], summary["pending"]) == (2, 1, 1)


def _outcome(product: str, label: str, decision: str) -> AcquisitionOutcome:
    return AcquisitionOutcome(f"{product}-x", product, 0, label, decision, 0.1, 0.0, 3, 1.0, 1.0, "OK", False, 7, 10)


def test_product_rows_without_labels_judge_nothing() -> None:
    [row] = product_rows([verdict(accepts=3, rejects=7, product_decision=2)], {})
    assert row["correct"] is None and row["label"] is None and row["product_verdict"] == "REJECT"


def test_reject_patches_are_the_over_ones_worst_first_with_their_frames() -> None:
    v = verdict(over={(0, 1, 2): 0.33, (15, 3, 0): 0.30})
    patches = reject_patches(v, kept=[(15, 3, 0)])
    assert [(p["frame"], p["vial"], p["region_id"]) for p in patches] == [(15, 3, "R0"), (0, 1, "R2")]
    assert patches[0]["ratio"] == pytest.approx(3.0) and patches[0]["has_images"]
    assert not patches[1]["has_images"]


def test_a_reject_with_no_patch_over_still_shows_its_worst_patch() -> None:
    v = verdict(base=0.9)
    rejected = type(v)(**{**vars(v), "decision": "REJECT"})
    [patch] = reject_patches(rejected, kept=[])
    assert patch["score"] == pytest.approx(0.9 * patch["threshold"])
    assert reject_patches(v, kept=[]) == []


def test_live_row_carries_what_the_operator_reads() -> None:
    row = live_row(verdict(over={(0, 0, 0): 0.2, (7, 0, 0): 0.3}, stream_id="5-1"))
    assert row["decision"] == "REJECT" and row["over_patches"] == 2 and row["model_version"] == 3
    assert row["worst_margin"] == pytest.approx(0.2) and row["server_ms"] == pytest.approx(35.0)
    assert row["stream_id"] == "5-1"
