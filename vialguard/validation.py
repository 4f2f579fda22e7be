"""Is a labelled product of a validation kit correctly classified, and why (paper 7.4).

Two different questions are asked of a product, and a table that shows both must
say which one each column answers:
- the *line verdict* (RunPolicy.product_verdict): ACCEPT once at least k of n runs
  accepted it, REJECT otherwise, or early once too many runs rejected it;
- the *validation criterion*: a good product is correctly classified when at least
  k runs accept it, a defective one when at least k runs reject it.
A defective product with 5 rejecting runs of 10 is REJECTed by the line (only 5
accepted, 7 needed) and yet not correctly classified (5 rejects, 7 needed). The demo's
table and the HMI's product view both call ``judge_product``, so they agree, and
both print its ``why``.
"""
from __future__ import annotations

from dataclasses import dataclass

from vialguard.decision import Decision, RunPolicy

GOOD, DEFECTIVE = "good", "defective"


@dataclass(frozen=True)
class ProductJudgement:
    verdict: Decision        # the line's product verdict under the run policy
    correct: bool | None     # None: no label, or not enough runs to judge
    why: str                 # one sentence an operator or a quality engineer can read


def _verdict_why(policy: RunPolicy, accepts: int, rejects: int, verdict: Decision) -> str:
    runs = accepts + rejects
    if verdict is Decision.PENDING:
        return f"{runs} of {policy.n} runs in ({accepts} accepted, {rejects} rejected)"
    if verdict is Decision.ACCEPT:
        return f"{accepts} of {runs} runs accepted ({policy.k} needed)"
    if runs < policy.n:
        return (f"rejected early: {rejects} runs rejected, so at most {policy.n - rejects} of {policy.n} can "
                f"accept ({policy.k} needed)")
    return f"only {accepts} of {runs} runs accepted ({policy.k} needed)"


def judge_product(policy: RunPolicy, label: str | None, accepts: int, rejects: int) -> ProductJudgement:
    """The line verdict of a product and, with a label, whether it is correctly classified."""
    verdict = policy.product_verdict(accepts, rejects)
    why = _verdict_why(policy, accepts, rejects, verdict)
    if label not in (GOOD, DEFECTIVE):
        return ProductJudgement(verdict, None, why)
    if accepts + rejects >= policy.n:
        correct = policy.correctly_classified(label == GOOD, accepts, rejects)  # the paper's criterion
        agreeing, word = (accepts, "accept") if label == GOOD else (rejects, "reject")
        criterion = f"labelled {label}: {agreeing} runs {word}ed it, {policy.k} of {policy.n} needed"
        return ProductJudgement(verdict, correct, f"{why}; {criterion}")
    if verdict is Decision.REJECT:  # rejected before all n runs: judged by the line's verdict
        return ProductJudgement(verdict, label == DEFECTIVE, f"{why}; labelled {label}")
    return ProductJudgement(verdict, None, f"{why}; labelled {label}, not judged before {policy.n} runs")
