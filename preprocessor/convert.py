"""Between the Redis messages (vialguard.messages) and the camera-facing protobufs.

Inside vialguard a patch's ``frame`` is its slot among the inspected frames
(vialguard.patching.PatchLabel); the camera API speaks of the frame's index in
the acquisition sequence (0..15), which is what a line engineer sees on the
camera. The translation happens here and only here.
"""
from __future__ import annotations

from collections.abc import Mapping

from vialguard.messages import PatchScore, PatchVerdict, VerdictMessage
from vialguard.patching import PatchLabel
from vialguard.recipe import REGION_IDS, Recipe
from vialguard.v1 import inspection_pb2 as pb

_DECISIONS = {"ACCEPT": pb.ACCEPT, "REJECT": pb.REJECT}
_PRODUCT_DECISIONS = {"ACCEPT": pb.PRODUCT_ACCEPT, "REJECT": pb.PRODUCT_REJECT, "PENDING": pb.PRODUCT_PENDING}


def sequence_frame(slot: int, recipe: Recipe) -> int:
    """Frame slot among the inspected frames -> index in the acquisition sequence."""
    return recipe.inspected_frames[slot] if 0 <= slot < len(recipe.inspected_frames) else slot


def patch_index(frame_slot: int, vial: int, region: int, recipe: Recipe) -> int:
    """Position of a patch in the patch order of vialguard.patching."""
    return (frame_slot * len(recipe.vials) + vial) * len(recipe.regions) + region


def region_id(region: int) -> str:
    return REGION_IDS[region] if 0 <= region < len(REGION_IDS) else f"R{region}"


def patch_scores(labels: list[PatchLabel], scores: list[float], phi: list[float] | None = None) -> list[PatchScore]:
    phis: list[float | None] = [float(p) for p in phi] if phi is not None else [None] * len(labels)
    return [PatchScore(label.frame, label.vial, label.region, float(s), p)
            for label, s, p in zip(labels, scores, phis)]


def stage_timings(verdict: VerdictMessage, local_ms: Mapping[str, float]) -> pb.StageTimings:
    """This call's own measures where it made them, else those carried by the verdict.

    The aggregator reports ``queue_wait_ms`` (stream entry to decision) and
    ``aggregator_decide_ms``; a replayed verdict has only those and the stage
    times the first call put in its scores message.
    """
    merged = {**verdict.timings_ms, **local_ms}
    aggregation = merged.get("aggregation_ms", merged.get("aggregator_decide_ms", 0.0))
    return pb.StageTimings(
        decode_ms=merged.get("decode_ms", 0.0),
        patching_ms=merged.get("patching_ms", 0.0),
        inference_ms=merged.get("inference_ms", 0.0),
        queue_ms=merged.get("queue_ms", merged.get("queue_wait_ms", 0.0)),
        aggregation_ms=aggregation,
        total_ms=merged.get("total_ms", 0.0),
    )


def _patch_result(p: PatchVerdict, recipe: Recipe) -> pb.PatchResult:
    return pb.PatchResult(
        frame=sequence_frame(p.frame, recipe), vial=p.vial, region=p.region, region_id=region_id(p.region),
        score=p.score, threshold=p.threshold, over=p.over,
    )


def to_proto(
    verdict: VerdictMessage,
    recipe: Recipe,
    local_ms: Mapping[str, float],
    replayed: bool = False,
    stream_id: str = "",
) -> pb.Verdict:
    """The camera-facing Verdict of one aggregator verdict."""
    rp = verdict.run_policy
    return pb.Verdict(
        acquisition_id=verdict.acquisition_id,
        product_id=verdict.product_id,
        run_index=verdict.run_index,
        decision=_DECISIONS.get(verdict.decision, pb.DECISION_UNSPECIFIED),
        strip_score=verdict.strip_score,
        worst_margin=verdict.worst_margin,
        patches=[_patch_result(p, recipe) for p in verdict.patches],
        model_name=verdict.model_name,
        model_version=verdict.model_version,
        run_policy=pb.RunPolicyState(
            k=rp.k, n=rp.n, runs_seen=rp.runs_seen, accepts=rp.accepts, rejects=rp.rejects,
            product_decision=_PRODUCT_DECISIONS.get(rp.product_decision, pb.PRODUCT_DECISION_UNSPECIFIED),
        ),
        timings=stage_timings(verdict, local_ms),
        threshold_set=verdict.threshold_set,
        replayed=replayed,
        stream_id=stream_id,
        decided_at_unix_ms=verdict.decided_unix_ms,
    )


def heatmap_patches(verdict: VerdictMessage, recipe: Recipe) -> list[int]:
    """Patch indices whose heatmaps an operator needs: the over-threshold ones.

    A strip rejected with no patch over (a broken score, a missing calibration)
    still shows its highest-scoring patch, so the screen is never empty for a reject.
    """
    n = recipe.patches_per_acquisition
    over = [patch_index(p.frame, p.vial, p.region, recipe) for p in verdict.patches if p.over]
    over = [i for i in over if 0 <= i < n]
    if over or not verdict.patches:
        return over
    worst = max(verdict.patches, key=lambda p: p.score if p.score == p.score else float("inf"))
    index = patch_index(worst.frame, worst.vial, worst.region, recipe)
    return [index] if 0 <= index < n else []
