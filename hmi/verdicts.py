"""The HMI's own view of a verdict, from either of its sources.

Live verdicts come from WatchVerdicts (protobuf, frames numbered in the
acquisition sequence); older ones from the audit store (JSON, frames numbered by
their slot among the inspected frames). Both become one ``VerdictView`` so every
page reads one shape.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from vialguard.recipe import REGION_IDS, Recipe
from vialguard.v1 import inspection_pb2 as pb


@dataclass(frozen=True)
class PatchView:
    frame: int          # index in the acquisition sequence (what the camera calls the frame)
    vial: int
    region: int
    score: float
    threshold: float
    over: bool

    @property
    def region_id(self) -> str:
        return REGION_IDS[self.region] if 0 <= self.region < len(REGION_IDS) else f"R{self.region}"

    @property
    def margin(self) -> float:
        return self.score - self.threshold


@dataclass(frozen=True)
class VerdictView:
    acquisition_id: str
    product_id: str
    run_index: int
    decision: str                 # ACCEPT / REJECT
    strip_score: float
    worst_margin: float
    model_name: str
    model_version: int
    threshold_set: str
    decided_at_unix_ms: int
    patches: tuple[PatchView, ...]
    timings_ms: dict[str, float] = field(default_factory=dict)
    k: int = 0
    n: int = 0
    accepts: int = 0
    rejects: int = 0
    product_decision: str = ""    # ACCEPT / REJECT / PENDING
    stream_id: str = ""

    @property
    def server_ms(self) -> float:
        """Time the stack spent on it: the stages it reports (WatchVerdicts carries no preprocessor total)."""
        t = self.timings_ms
        if t.get("total_ms"):
            return float(t["total_ms"])
        return float(sum(t.get(k, 0.0) for k in ("decode_ms", "patching_ms", "inference_ms", "queue_ms",
                                                   "aggregation_ms")))


def from_proto(v: pb.Verdict) -> VerdictView:
    t = v.timings
    rp = v.run_policy
    product = pb.ProductDecision.Name(rp.product_decision).removeprefix("PRODUCT_")
    return VerdictView(
        acquisition_id=v.acquisition_id, product_id=v.product_id, run_index=v.run_index,
        decision=pb.Decision.Name(v.decision), strip_score=float(v.strip_score), worst_margin=float(v.worst_margin),
        model_name=v.model_name, model_version=int(v.model_version), threshold_set=v.threshold_set,
        decided_at_unix_ms=int(v.decided_at_unix_ms),
        patches=tuple(PatchView(p.frame, p.vial, p.region, float(p.score), float(p.threshold), bool(p.over))
                      for p in v.patches),
        timings_ms={"decode_ms": t.decode_ms, "patching_ms": t.patching_ms, "inference_ms": t.inference_ms,
                    "queue_ms": t.queue_ms, "aggregation_ms": t.aggregation_ms, "total_ms": t.total_ms},
        k=rp.k, n=rp.n, accepts=rp.accepts, rejects=rp.rejects, product_decision=product, stream_id=v.stream_id,
    )


def from_audit(record: dict[str, Any], recipe: Recipe) -> VerdictView:
    """A verdict from its audit record (frame slots translated with the recipe, as the preprocessor does)."""
    v = record["verdict"]
    frames = recipe.inspected_frames
    rp = v.get("run_policy", {})
    timings = dict(v.get("timings_ms", {}))
    timings.setdefault("queue_ms", timings.get("queue_wait_ms", 0.0))
    timings.setdefault("aggregation_ms", timings.get("aggregator_decide_ms", 0.0))
    return VerdictView(
        acquisition_id=v["acquisition_id"], product_id=v["product_id"], run_index=int(v["run_index"]),
        decision=v["decision"], strip_score=float(v["strip_score"]), worst_margin=float(v["worst_margin"]),
        model_name=v.get("model_name", ""), model_version=int(v["model_version"]),
        threshold_set=v.get("threshold_set", ""), decided_at_unix_ms=int(v.get("decided_unix_ms", 0)),
        patches=tuple(PatchView(frames[p["frame"]] if 0 <= p["frame"] < len(frames) else p["frame"], p["vial"],
                                p["region"], float(p["score"]), float(p["threshold"]), bool(p["over"]))
                      for p in v.get("patches", [])),
        timings_ms=timings, k=int(rp.get("k", 0)), n=int(rp.get("n", 0)), accepts=int(rp.get("accepts", 0)),
        rejects=int(rp.get("rejects", 0)), product_decision=str(rp.get("product_decision", "")),
    )
