"""judge_product: the line verdict and the validation criterion, and a sentence saying why."""
from __future__ import annotations

import pytest

from vialguard.decision import Decision, RunPolicy
from vialguard.validation import judge_product

POLICY = RunPolicy(7, 10)


@pytest.mark.parametrize(("label", "accepts", "rejects", "verdict", "correct", "phrase"), [
    ("good", 8, 2, Decision.ACCEPT, True, "8 runs accepted it"),
    ("good", 6, 4, Decision.REJECT, False, "only 6 of 10 runs accepted"),
    ("defective", 2, 8, Decision.REJECT, True, "8 runs rejected it"),
    ("defective", 5, 5, Decision.REJECT, False, "5 runs rejected it, 7 of 10 needed"),
    ("defective", 0, 4, Decision.REJECT, True, "rejected early"),
    ("good", 3, 1, Decision.PENDING, None, "not judged before 10 runs"),
    (None, 8, 2, Decision.ACCEPT, None, "8 of 10 runs accepted"),
])
def test_judge_product(label: str | None, accepts: int, rejects: int, verdict: Decision, correct: bool | None,
                       phrase: str) -> None:
    judged = judge_product(POLICY, label, accepts, rejects)
    assert (judged.verdict, judged.correct) == (verdict, correct)
    assert phrase in judged.why
