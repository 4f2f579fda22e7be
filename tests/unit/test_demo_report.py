"""The demo's tables and figures: verdicts -> per-acquisition rows, per-product run policy, summary."""
from __future__ import annotations

import numpy as np
import pytest

from vialguard.decision import Decision, RunPolicy
from vialguard.v1 import inspection_pb2 as pb
from vialguard_stack.camera import PushResult, Shot
from vialguard_stack.demo_report import (
    ACQUISITION_TABLE,
    PRODUCT_TABLE,
    DemoResult,
    acquisition_row,
    outcome_from,
    product_outcomes,
    product_row,
    run_policy_of,
    pace_lines,
    summary_lines,
)
from vialguard_stack.table import Column, Table

FRAMES = np.zeros((1, 2, 2), np.uint8)


def _result(product: str, run: int, label: str, decision: str | None, latency_ms: float = 50.0,
            status: str = "OK", missed: bool = False, k: int = 7, n: int = 10,
            inference_ms: float = 0.0) -> PushResult:
    shot = Shot(f"{product}-R{run:02d}", product, run, FRAMES, label)
    verdict = None
    if decision is not None:
        verdict = pb.Verdict(acquisition_id=shot.acquisition_id, product_id=product, run_index=run,
                             decision=pb.Decision.Value(decision), strip_score=0.3, worst_margin=-0.1,
                             model_version=4, run_policy=pb.RunPolicyState(k=k, n=n),
                             timings=pb.StageTimings(total_ms=latency_ms - 5, inference_ms=inference_ms))
    return PushResult(shot, verdict, status, "", latency_ms, 1.0, missed, missed and verdict is not None)


def _runs(product: str, label: str, accepts: int, rejects: int) -> list[PushResult]:
    decisions = ["ACCEPT"] * accepts + ["REJECT"] * rejects
    return [_result(product, i, label, d) for i, d in enumerate(decisions)]


def test_an_acquisition_is_correct_when_its_decision_matches_its_label() -> None:
    assert outcome_from(_result("P1", 0, "good", "ACCEPT")).correct is True
    assert outcome_from(_result("P1", 0, "defective", "ACCEPT")).correct is False
    assert outcome_from(_result("P1", 0, "defective", "REJECT")).correct is True
    assert outcome_from(_result("P1", 0, "good", None, status="INVALID_ARGUMENT")).correct is None


@pytest.mark.parametrize("label, accepts, rejects, verdict, correct", [
    ("good", 7, 3, Decision.ACCEPT, True),        # 7 of 10 agree: correctly classified
    ("good", 6, 4, Decision.REJECT, False),       # the line rejects a good product
    ("defective", 3, 7, Decision.REJECT, True),
    ("defective", 5, 5, Decision.REJECT, False),  # rejected, but fewer than 7 runs agree (paper criterion)
    ("defective", 0, 4, Decision.REJECT, True),   # rejected early, before all 10 runs
    ("good", 3, 0, Decision.PENDING, None),       # too few runs to judge
])
def test_products_follow_the_k_of_n_run_policy(label: str, accepts: int, rejects: int, verdict: Decision,
                                               correct: bool | None) -> None:
    outcomes = [outcome_from(r) for r in _runs("P7", label, accepts, rejects)]
    [product] = product_outcomes(outcomes, RunPolicy(7, 10))
    assert (product.accepts, product.rejects, product.verdict, product.correct) == (accepts, rejects, verdict, correct)


def test_the_run_policy_is_the_one_the_verdicts_carry() -> None:
    outcomes = [outcome_from(_result("P1", 0, "good", None)), outcome_from(_result("P1", 1, "good", "ACCEPT", k=2, n=3))]
    assert run_policy_of(outcomes) == RunPolicy(2, 3)
    assert run_policy_of([outcome_from(_result("P1", 0, "good", None))]) == RunPolicy()


def test_summary_names_good_accepted_and_defects_rejected_and_latency_quantiles() -> None:
    results = _runs("P1", "good", 9, 1) + _runs("P2", "defective", 2, 8)
    results.append(_result("P3", 0, "good", "ACCEPT", latency_ms=900.0, status="DEADLINE_EXCEEDED", missed=True))
    outcomes = [outcome_from(r) for r in results]
    policy = run_policy_of(outcomes)
    demo = DemoResult(outcomes, product_outcomes(outcomes, policy), policy, 500.0)
    assert demo.good_accepted == pytest.approx(10 / 11)
    assert demo.defects_rejected == pytest.approx(8 / 10)
    assert demo.acquisition_accuracy == pytest.approx(18 / 21)
    assert demo.product_accuracy == 1.0 and demo.pending_products == 1
    assert demo.misses == 1 and demo.failures == 0
    assert demo.latency_ms(50) == pytest.approx(50.0) and demo.latency_ms(99) > 500
    text = "\n".join(summary_lines(demo))
    assert "good accepted 90.9 %" in text and "defects rejected 80.0 %" in text
    assert "7 of 10" in text and "missed 1" in text and "1 pending" in text


def test_rows_flag_wrong_decisions_and_deadline_misses() -> None:
    wrong = acquisition_row(outcome_from(_result("P2", 0, "defective", "ACCEPT")))
    late = acquisition_row(outcome_from(_result("P1", 0, "good", "ACCEPT", 700.0, "DEADLINE_EXCEEDED", True)))
    assert wrong[-1] == "WRONG" and late[-1] == "DEADLINE MISS, late verdict"
    line = ACQUISITION_TABLE.row(wrong)
    assert "P2-R00" in line and "ACCEPT" in line and "0.3000" in line and "-0.1000" in line
    outcomes = [outcome_from(r) for r in _runs("P2", "defective", 1, 9)]
    [product] = product_outcomes(outcomes, RunPolicy())
    assert PRODUCT_TABLE.row(product_row(product)).split()[-2:] == ["REJECT", "yes"]


def test_table_columns_stay_aligned_and_refuse_a_wrong_row_length() -> None:
    table = Table([Column("id", 6, align="<"), Column("score", 7, ".3f")])
    lines = table.render([["a", 0.5], ["bbbbbbbbbb", float("nan")], [None, 12.25]]).splitlines()
    assert lines[0] == "id        score" and set(lines[1]) == {"-", " "}
    assert lines[2] == "a         0.500" and lines[3] == "bbbbb~      nan" and lines[4] == "-        12.250"
    with pytest.raises(ValueError, match="2 columns"):
        table.row([1])


def _demo(results: list[PushResult]) -> DemoResult:
    outcomes = [outcome_from(r) for r in results]
    policy = run_policy_of(outcomes)
    return DemoResult(outcomes, product_outcomes(outcomes, policy), policy, 500.0)


def test_a_cpu_too_slow_for_the_model_is_named_as_the_cause_of_the_misses() -> None:
    slow = [_result("P1", i, "good", "ACCEPT", 520.0, "DEADLINE_EXCEEDED", True, inference_ms=600.0 + i)
            for i in range(10)]
    lines = pace_lines(_demo(slow))
    assert "p50 604.5 ms" in lines[0] and "121 % of the 500 ms deadline" in lines[0]
    assert "this CPU is too slow for this model" in lines[1] and "10 of 10 missed verdicts still came" in lines[1]
    assert lines[1] in summary_lines(_demo(slow))


def test_misses_with_fast_inference_point_at_the_rest_of_the_round_trip() -> None:
    results = [_result("P1", i, "good", "ACCEPT", 520.0, "DEADLINE_EXCEEDED", True, inference_ms=200.0)
               for i in range(3)] + [_result("P1", 3, "good", "ACCEPT", 250.0, inference_ms=200.0)]
    lines = pace_lines(_demo(results))
    assert "40 % of the 500 ms deadline" in lines[0]
    assert "too slow" not in " ".join(lines) and "the rest of the round trip is slow" in lines[1]


def test_no_miss_no_diagnosis_and_no_timings_no_pace_line() -> None:
    on_time = [_result("P1", i, "good", "ACCEPT", 250.0, inference_ms=210.0) for i in range(4)]
    assert len(pace_lines(_demo(on_time))) == 1
    assert pace_lines(_demo([_result("P1", 0, "good", "ACCEPT")])) == []  # verdicts without stage timings
