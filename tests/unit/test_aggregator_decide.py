"""The aggregator's decision: eq. 13 with the answering version's thresholds, then k-of-n per product."""
from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from aggregator.decide import MISSING_CALIBRATION, decide, merge_runs
from aggregator.intake import PoisonMessage, parse_scores
from aggregator.thresholds import CalibrationLookup, ThresholdCache
from vialguard.calibration import Calibration
from vialguard.decision import RegionThresholds, RunPolicy
from vialguard.messages import PatchScore, ScoresMessage
from vialguard.model_repository import publish_version


def calibration(t: tuple[float, float, float, float], k: int = 7, n: int = 10) -> Calibration:
    th = RegionThresholds(*t)
    return Calibration(profile="cpu", patch_size=64, recipe_id="bfs5-10ml", recipe_digest="sha256:r",
                       training_data_digest="sha256:d", thresholds={"patch": th, "strip": th, "run": th},
                       run_policy=RunPolicy(k, n))


def scores(region_scores: dict[int, float], *, base: float = 0.01, acq: str = "A1", product: str = "P1",
           run: int = 0, version: int = 1) -> ScoresMessage:
    """60 patches (3 frames x 5 vials x 4 regions) at ``base``; vial 2 of frame 1 gets region_scores."""
    patches = [PatchScore(f, v, r, region_scores.get(r, base) if (f, v) == (1, 2) else base)
               for f in range(3) for v in range(5) for r in range(4)]
    return ScoresMessage(acq, product, run, "bfs5-10ml", "inspector", version, patches, {"inference_ms": 3.0},
                         received_unix_ms=1_000)


def found(cal: Calibration) -> CalibrationLookup:
    return CalibrationLookup(cal)


def test_one_patch_over_its_region_threshold_rejects_the_strip() -> None:
    cal = found(calibration((0.2, 0.3, 0.4, 0.5)))
    result = decide(scores({2: 0.41}), cal, {}, now_unix_ms=2_000)
    v = result.verdict
    assert v.decision == "REJECT"
    assert v.strip_score == pytest.approx(0.41)
    assert v.worst_margin == pytest.approx(0.01)
    over = [p for p in v.patches if p.over]
    assert [(p.frame, p.vial, p.region, p.threshold) for p in over] == [(1, 2, 2, 0.4)]
    assert v.timings_ms["inference_ms"] == 3.0 and v.timings_ms["queue_wait_ms"] == 1_000


def test_score_at_threshold_accepts_and_each_region_uses_its_own_threshold() -> None:
    cal = found(calibration((0.2, 0.3, 0.4, 0.5)))
    # 0.45 would be over R0..R2's thresholds, but it sits in R3 (threshold 0.5)
    v = decide(scores({3: 0.45, 2: 0.4}), cal, {}).verdict
    assert v.decision == "ACCEPT"
    assert all(not p.over for p in v.patches)
    assert {p.region: p.threshold for p in v.patches} == {0: 0.2, 1: 0.3, 2: 0.4, 3: 0.5}


def test_nan_score_rejects() -> None:
    v = decide(scores({0: float("nan")}), found(calibration((0.2, 0.3, 0.4, 0.5))), {}).verdict
    assert v.decision == "REJECT"


def _publish(repo: Path, t: tuple[float, float, float, float]) -> int:
    def write(d: Path) -> None:
        (d / "model.onnx").write_bytes(b"dummy onnx")
        calibration(t).save(d / "calibration.json")
    return publish_version(repo, write)


def test_scores_are_judged_with_the_thresholds_of_the_version_that_produced_them(tmp_path: Path) -> None:
    strict, lenient = _publish(tmp_path, (0.1, 0.1, 0.1, 0.1)), _publish(tmp_path, (0.5, 0.5, 0.5, 0.5))
    cache = ThresholdCache(tmp_path)
    msg_strict = scores({1: 0.3}, version=strict)
    msg_lenient = scores({1: 0.3}, version=lenient)
    assert decide(msg_strict, cache.lookup("inspector", strict), {}).verdict.decision == "REJECT"
    assert decide(msg_lenient, cache.lookup("inspector", lenient), {}).verdict.decision == "ACCEPT"
    # a newer version appearing does not change what an older version's scores are judged with
    _publish(tmp_path, (0.9, 0.9, 0.9, 0.9))
    assert decide(msg_strict, cache.lookup("inspector", strict), {}).verdict.decision == "REJECT"


def test_missing_calibration_never_accepts(tmp_path: Path) -> None:
    cache = ThresholdCache(tmp_path)
    lookup = cache.lookup("inspector", 42)
    assert lookup.calibration is None and "42" in lookup.problem
    result = decide(scores({}, base=0.0), lookup, {})  # perfect scores, still no thresholds
    assert result.verdict.decision == "REJECT"
    assert result.verdict.threshold_set == MISSING_CALIBRATION
    assert result.problem


def test_broken_calibration_never_accepts_and_a_repaired_one_is_picked_up(tmp_path: Path) -> None:
    version = _publish(tmp_path, (0.5, 0.5, 0.5, 0.5))
    cal_file = tmp_path / "inspector" / str(version) / "calibration.json"
    good_text = cal_file.read_text()
    cal_file.write_text("{ not json")
    cache = ThresholdCache(tmp_path)
    broken = cache.lookup("inspector", version)
    assert decide(scores({}), broken, {}).verdict.decision == "REJECT"
    cal_file.write_text(good_text)
    assert decide(scores({}), cache.lookup("inspector", version), {}).verdict.decision == "ACCEPT"


def test_model_name_cannot_escape_the_repository(tmp_path: Path) -> None:
    assert ThresholdCache(tmp_path).lookup("../etc", 1).calibration is None


def test_run_policy_gives_a_product_verdict_once_its_runs_are_in() -> None:
    cal = found(calibration((0.2, 0.2, 0.2, 0.2), k=7, n=10))
    runs: dict[int, str] = {}
    outcome = ["ACCEPT"] * 7 + ["REJECT"] * 3
    for run, want in enumerate(outcome):
        result = decide(scores({0: 0.1 if want == "ACCEPT" else 0.9}, acq=f"A{run}", run=run), cal, runs)
        runs = result.runs
        state = result.verdict.run_policy
        assert state.runs_seen == run + 1
        if run < 9:
            assert state.product_decision == "PENDING"
    assert (state.k, state.n, state.accepts, state.rejects, state.product_decision) == (7, 10, 7, 3, "ACCEPT")


def test_product_with_too_many_rejected_runs_is_rejected_early() -> None:
    cal = found(calibration((0.2, 0.2, 0.2, 0.2), k=7, n=10))
    runs: dict[int, str] = {}
    for run in range(4):
        result = decide(scores({0: 0.9}, acq=f"A{run}", run=run), cal, runs)
        runs = result.runs
    assert result.verdict.run_policy.product_decision == "REJECT"  # 4 > 10 - 7: 7 accepts are out of reach


def test_the_same_run_is_counted_once_and_a_retake_cannot_launder_a_reject() -> None:
    cal = found(calibration((0.2, 0.2, 0.2, 0.2)))
    first = decide(scores({0: 0.9}, acq="A1", run=3), cal, {})
    again = decide(scores({0: 0.1}, acq="A1-retake", run=3), cal, first.runs)
    assert again.verdict.decision == "ACCEPT"  # the strip itself passed this time
    assert again.runs == {3: "REJECT"}
    assert (again.verdict.run_policy.runs_seen, again.verdict.run_policy.rejects) == (1, 1)


def test_runs_rebuilt_from_any_order_of_records_are_the_same() -> None:
    rows = [(1, "ACCEPT"), (2, "REJECT"), (1, "REJECT"), (3, "ACCEPT")]
    assert merge_runs(rows) == merge_runs(list(reversed(rows))) == {1: "REJECT", 2: "REJECT", 3: "ACCEPT"}


def test_verdict_json_carries_scores_thresholds_version_and_timings() -> None:
    v = decide(scores({2: 0.41}, version=5), found(calibration((0.2, 0.3, 0.4, 0.5))), {}).verdict
    data = json.loads(v.to_json())
    assert data["model_version"] == 5 and data["threshold_set"] == "run"
    assert len(data["patches"]) == 60 and {"score", "threshold", "over"} <= set(data["patches"][0])
    assert "aggregator_decide_ms" in data["timings_ms"]


@pytest.mark.parametrize("data, reason", [
    ("not json", "not JSON"),
    (json.dumps({"acquisition_id": "A"}), "does not match"),
    (None, "no fields"),
])
def test_unreadable_messages_are_poison(data: str | None, reason: str) -> None:
    with pytest.raises(PoisonMessage, match=reason):
        parse_scores(None if data is None else {b"data": data.encode()})


@pytest.mark.parametrize("change, reason", [
    (lambda d: d.update(patches=[]), "no patch scores"),
    (lambda d: d["patches"][0].update(region=4), "region"),
    (lambda d: d["patches"][0].update(score="high"), "not a number"),
    (lambda d: d["patches"][0].update(score=-math.inf), "infinite"),
    (lambda d: d.update(product_id=""), "product_id"),
    (lambda d: d.update(model_version="2"), "model_version"),
])
def test_messages_that_cannot_be_judged_safely_are_poison(change, reason: str) -> None:
    fields = scores({}).to_fields()
    data = json.loads(fields["data"])
    change(data)
    with pytest.raises(PoisonMessage, match=reason):
        parse_scores({"data": json.dumps(data)})


def test_a_good_message_parses_back() -> None:
    msg = scores({1: 0.3})
    assert parse_scores({k.encode(): v.encode() for k, v in msg.to_fields().items()}) == msg
