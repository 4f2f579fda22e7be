"""What the demo measured: one row per acquisition, one per product, and the summary.

Plain words, as DESIGN asks: "good accepted" (the paper's TPR, a good product is
its "positive") and "defects rejected" (its TNR). A product's verdict follows the
run policy k-of-n carried by the verdicts (the model version's calibration), and a
product counts as correctly classified when at least k of its n runs agree with
its label (paper 7.4); with fewer than n runs a product is judged only when the
line already rejected it early, and is otherwise left pending.
"""
from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from vialguard.decision import Decision, RunPolicy
from vialguard.validation import judge_product
from vialguard.v1 import inspection_pb2 as pb
from vialguard_stack.camera import PushResult
from vialguard_stack.table import Column, Table

GOOD, DEFECTIVE = "good", "defective"
_EXPECTED = {GOOD: "ACCEPT", DEFECTIVE: "REJECT"}


@dataclass(frozen=True)
class AcquisitionOutcome:
    acquisition_id: str
    product_id: str
    run_index: int
    label: str | None
    decision: str | None         # ACCEPT / REJECT, None when no verdict came back at all
    strip_score: float | None
    worst_margin: float | None
    model_version: int | None
    server_total_ms: float | None  # the preprocessor's request -> verdict time
    round_trip_ms: float           # what the camera waited (first call)
    status: str                    # OK or the gRPC status of the first call
    missed: bool                   # no verdict within the camera's deadline
    k: int = 0
    n: int = 0
    inference_ms: float | None = None  # the preprocessor's inference stage (Triton), from the verdict's timings

    @property
    def correct(self) -> bool | None:
        if self.label is None or self.decision is None:
            return None
        return _EXPECTED[self.label] == self.decision


def outcome_from(result: PushResult) -> AcquisitionOutcome:
    shot, v = result.shot, result.verdict
    if v is None:
        return AcquisitionOutcome(shot.acquisition_id, shot.product_id, shot.run_index, shot.label, None, None,
                                  None, None, None, result.latency_ms, result.status, result.deadline_missed)
    return AcquisitionOutcome(
        shot.acquisition_id, shot.product_id, shot.run_index, shot.label, pb.Decision.Name(v.decision),
        float(v.strip_score), float(v.worst_margin), int(v.model_version), float(v.timings.total_ms),
        result.latency_ms, result.status, result.deadline_missed, int(v.run_policy.k), int(v.run_policy.n),
        float(v.timings.inference_ms) if v.timings.inference_ms > 0 else None,
    )


@dataclass(frozen=True)
class ProductOutcome:
    product_id: str
    label: str | None
    accepts: int
    rejects: int
    no_verdict: int
    verdict: Decision
    correct: bool | None
    why: str = ""


def run_policy_of(outcomes: Sequence[AcquisitionOutcome]) -> RunPolicy:
    """The k-of-n the aggregator applied (from the verdicts); the default when none came back."""
    for o in outcomes:
        if o.k and o.n:
            return RunPolicy(o.k, o.n)
    return RunPolicy()


def product_outcomes(outcomes: Sequence[AcquisitionOutcome], policy: RunPolicy) -> list[ProductOutcome]:
    runs: dict[str, list[AcquisitionOutcome]] = defaultdict(list)
    for o in outcomes:
        runs[o.product_id].append(o)
    products = []
    for product_id, items in runs.items():
        accepts = sum(o.decision == "ACCEPT" for o in items)
        rejects = sum(o.decision == "REJECT" for o in items)
        label = items[0].label
        judged = judge_product(policy, label, accepts, rejects)  # the HMI's product view says the same
        products.append(ProductOutcome(product_id, label, accepts, rejects, len(items) - accepts - rejects,
                                       judged.verdict, judged.correct, judged.why))
    return products


def _share(hits: int, total: int) -> float | None:
    return hits / total if total else None


@dataclass(frozen=True)
class DemoResult:
    acquisitions: list[AcquisitionOutcome]
    products: list[ProductOutcome]
    policy: RunPolicy
    deadline_ms: float
    run_dir: Path | None = None

    @property
    def model_versions(self) -> list[int]:
        return sorted({o.model_version for o in self.acquisitions if o.model_version is not None})

    @property
    def acquisition_accuracy(self) -> float | None:
        judged = [o.correct for o in self.acquisitions if o.correct is not None]
        return _share(sum(judged), len(judged))

    def _decided_share(self, label: str, decision: str) -> float | None:
        items = [o for o in self.acquisitions if o.label == label and o.decision is not None]
        return _share(sum(o.decision == decision for o in items), len(items))

    @property
    def good_accepted(self) -> float | None:
        return self._decided_share(GOOD, "ACCEPT")

    @property
    def defects_rejected(self) -> float | None:
        return self._decided_share(DEFECTIVE, "REJECT")

    @property
    def product_accuracy(self) -> float | None:
        judged = [p.correct for p in self.products if p.correct is not None]
        return _share(sum(judged), len(judged))

    @property
    def pending_products(self) -> int:
        return sum(p.verdict is Decision.PENDING for p in self.products)

    @property
    def misses(self) -> int:
        return sum(o.missed for o in self.acquisitions)

    @property
    def failures(self) -> int:
        """Acquisitions that got no verdict at all (refused, or lost)."""
        return sum(o.decision is None for o in self.acquisitions)

    def latency_ms(self, quantile: float) -> float | None:
        return _quantile([o.round_trip_ms for o in self.acquisitions], quantile)

    def inference_ms(self, quantile: float) -> float | None:
        """The inference stage from the verdicts' timings (a late verdict fetched again carries its own)."""
        return _quantile([o.inference_ms for o in self.acquisitions if o.inference_ms is not None], quantile)


def _quantile(values: list[float], quantile: float) -> float | None:
    return float(np.percentile(values, quantile)) if values else None


ACQUISITION_TABLE = Table([
    Column("acquisition", 22, align="<"), Column("product", 12, align="<"), Column("run", 3),
    Column("label", 9, align="<"), Column("decision", 8, align="<"), Column("strip score", 11, ".4f"),
    Column("worst margin", 12, "+.4f"), Column("model", 5), Column("server ms", 9, ".1f"),
    Column("total ms", 8, ".1f"), Column("", 18, align="<"),
])

PRODUCT_TABLE = Table([
    Column("product", 12, align="<"), Column("label", 9, align="<"), Column("accepts", 7),
    Column("rejects", 7), Column("no verdict", 10), Column("product verdict", 15, align="<"),
    Column("correct?", 8, align="<"),
])


def acquisition_row(o: AcquisitionOutcome) -> list[object]:
    note = "" if o.status == "OK" else ("DEADLINE MISS" + (", late verdict" if o.decision else "")
                                        if o.missed else o.status)
    if o.correct is False:
        note = ("WRONG " + note).strip()
    return [o.acquisition_id, o.product_id, o.run_index, o.label, o.decision, o.strip_score, o.worst_margin,
            o.model_version, o.server_total_ms, o.round_trip_ms, note]


def product_row(p: ProductOutcome) -> list[object]:
    correct = "-" if p.correct is None else ("yes" if p.correct else "NO")
    return [p.product_id, p.label, p.accepts, p.rejects, p.no_verdict, p.verdict.value, correct]


def product_why_lines(products: Sequence[ProductOutcome]) -> list[str]:
    """Under the product table: why each product got its verdict and its "correct?" (vialguard.validation)."""
    return [f"  {p.product_id}: {p.why}" for p in products if p.why]


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.1f} %"


def summary_lines(result: DemoResult) -> list[str]:
    p50, p99 = result.latency_ms(50), result.latency_ms(99)
    latency = "-" if p50 is None else f"p50 {p50:.1f} ms, p99 {p99:.1f} ms"
    return [
        f"acquisitions: {len(result.acquisitions)}, model version(s) {result.model_versions or '-'}",
        f"per acquisition: accuracy {_pct(result.acquisition_accuracy)}; good accepted "
        f"{_pct(result.good_accepted)} (paper's TPR), defects rejected {_pct(result.defects_rejected)} (paper's TNR)",
        f"per product, run policy {result.policy.k} of {result.policy.n}: correctly classified "
        f"{_pct(result.product_accuracy)} of {sum(p.correct is not None for p in result.products)} judged products"
        + (f" ({result.pending_products} pending: fewer than {result.policy.n} runs)" if result.pending_products
           else ""),
        f"camera round trip: {latency}; deadline {result.deadline_ms:.0f} ms missed {result.misses} time(s); "
        f"no verdict at all: {result.failures}",
    ] + pace_lines(result)


# Inference this close to the deadline leaves too little for gRPC, decoding, the queue and the
# aggregator (about 20-40 ms on 2 cores, make bench-stack) and for any jitter.
INFERENCE_SHARE_TOO_SLOW = 0.8


def pace_lines(result: DemoResult) -> list[str]:
    """Where the round trip went, and when deadlines were missed, whether the machine is too slow for the model.

    A line engineer trying the demo on a slower CPU must read "this CPU cannot infer this model
    within the slot" at once, not guess it from a column of DEADLINE MISS rows.
    """
    p50 = result.inference_ms(50)
    if p50 is None:
        return []
    lines = [f"inference (Triton, from each verdict's stage timings): p50 {p50:.1f} ms, "
             f"p99 {result.inference_ms(99):.1f} ms, {100 * p50 / result.deadline_ms:.0f} % of the "
             f"{result.deadline_ms:.0f} ms deadline"]
    if not result.misses:
        return lines
    late = sum(o.missed and o.decision is not None for o in result.acquisitions)
    if p50 >= INFERENCE_SHARE_TOO_SLOW * result.deadline_ms:
        lines.append(f"  deadlines missed because inference alone takes most of the slot: this CPU is too slow for "
                     f"this model at the line's pace ({late} of {result.misses} missed verdicts still came, late). "
                     f"Measure it with make bench-inference; README, 'Speed on other CPUs'")
    else:
        lines.append(f"  deadlines missed although inference takes p50 {p50:.0f} ms: the rest of the round trip is "
                     f"slow (other load on this machine? each verdict's stage timings say where the time went)")
    return lines
