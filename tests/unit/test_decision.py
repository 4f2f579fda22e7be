"""Strip rule (eq. 13) and k-of-n run policy."""
from __future__ import annotations

import numpy as np
import pytest

from vialguard.decision import Decision, RegionThresholds, RunPolicy, decide_strip

T = RegionThresholds(0.1, 0.2, 0.3, 0.4)
REGIONS = np.tile(np.arange(4), 15)  # 60 patches


def test_strip_accepted_when_every_patch_is_under_its_region_threshold() -> None:
    scores = T.as_array()[REGIONS] - 0.01
    d = decide_strip(scores, REGIONS, T)
    assert d.decision is Decision.ACCEPT
    assert not d.over.any()
    assert d.worst_margin < 0


def test_one_patch_over_its_own_region_threshold_rejects_the_strip() -> None:
    scores = np.zeros(60)
    scores[5] = 0.25  # region 1: threshold 0.2
    d = decide_strip(scores, REGIONS, T)
    assert d.decision is Decision.REJECT
    assert d.over.nonzero()[0].tolist() == [5]
    assert d.strip_score == pytest.approx(0.25)


def test_same_score_is_fine_in_a_region_with_a_higher_threshold() -> None:
    scores = np.zeros(60)
    scores[3] = 0.25  # region 3: threshold 0.4
    assert decide_strip(scores, REGIONS, T).decision is Decision.ACCEPT


def test_nan_score_never_accepts() -> None:
    scores = np.zeros(60)
    scores[0] = np.nan
    assert decide_strip(scores, REGIONS, T).decision is Decision.REJECT


def test_score_count_must_match_patches() -> None:
    with pytest.raises(ValueError):
        decide_strip(np.zeros(59), REGIONS, T)


@pytest.mark.parametrize(
    ("accepts", "rejects", "verdict"),
    [(7, 3, Decision.ACCEPT), (6, 4, Decision.REJECT), (10, 0, Decision.ACCEPT), (5, 3, Decision.PENDING), (3, 4, Decision.REJECT)],
)
def test_run_policy_7_of_10(accepts: int, rejects: int, verdict: Decision) -> None:
    assert RunPolicy(7, 10).product_verdict(accepts, rejects) is verdict


def test_paper_criterion_for_correct_classification() -> None:
    p = RunPolicy()
    assert p.correctly_classified(True, 7, 3)
    assert not p.correctly_classified(True, 6, 4)
    assert p.correctly_classified(False, 3, 7)
    assert not p.correctly_classified(False, 4, 6)  # rejected on the line, but not 7 of 10


def test_run_policy_refuses_impossible_k() -> None:
    with pytest.raises(ValueError):
        RunPolicy(11, 10)
