"""Redis verdicts -> camera-facing protobufs: frame numbering, timings and which heatmaps to keep."""
from __future__ import annotations

import math

from preprocessor.convert import heatmap_patches, patch_index, stage_timings, to_proto
from vialguard.messages import PatchVerdict, RunPolicyState, VerdictMessage
from vialguard.patching import acquisition_labels
from vialguard.recipe import load_recipe
from vialguard.v1 import inspection_pb2 as pb

RECIPE = load_recipe()


def verdict(scores: list[float], over: set[int], decision: str = "REJECT") -> VerdictMessage:
    labels = acquisition_labels(RECIPE)
    return VerdictMessage(
        acquisition_id="a", product_id="p", run_index=3, decision=decision, strip_score=max(scores),
        worst_margin=0.1, model_name="inspector", model_version=4, threshold_set="strip",
        patches=[PatchVerdict(lb.frame, lb.vial, lb.region, s, 0.5, i in over)
                 for i, (lb, s) in enumerate(zip(labels, scores))],
        run_policy=RunPolicyState(7, 10, 3, 2, 1, "PENDING"),
        timings_ms={"decode_ms": 1.0, "queue_wait_ms": 4.0, "aggregator_decide_ms": 0.3},
    )


def test_patch_index_follows_the_core_patch_order() -> None:
    for i, label in enumerate(acquisition_labels(RECIPE)):
        assert patch_index(label.frame, label.vial, label.region, RECIPE) == i


def test_frames_are_numbered_in_the_acquisition_sequence_and_decisions_mapped() -> None:
    reply = to_proto(verdict([0.1] * 60, {41}), RECIPE, {}, replayed=True)
    assert [p.frame for p in reply.patches[::20]] == [0, 7, 15]
    assert reply.decision == pb.REJECT and reply.replayed
    assert reply.run_policy.product_decision == pb.PRODUCT_PENDING and reply.run_policy.accepts == 2
    assert [p.over for p in reply.patches].index(True) == 41 and reply.patches[41].region_id == "R1"


def test_own_timings_win_and_a_replay_falls_back_on_the_carried_ones() -> None:
    carried = stage_timings(verdict([0.1] * 60, set()), {})
    assert (carried.decode_ms, carried.queue_ms, carried.aggregation_ms) == (1.0, 4.0, 0.3)
    own = stage_timings(verdict([0.1] * 60, set()), {"decode_ms": 2.5, "queue_ms": 1.0})
    assert (own.decode_ms, own.queue_ms) == (2.5, 1.0)


def test_heatmaps_kept_are_the_over_threshold_patches() -> None:
    assert heatmap_patches(verdict([0.1] * 60, {2, 50}), RECIPE) == [2, 50]


def test_a_reject_with_no_patch_over_keeps_its_worst_patch() -> None:
    scores = [0.1] * 60
    scores[33] = 0.4
    assert heatmap_patches(verdict(scores, set()), RECIPE) == [33]
    scores[12] = math.nan  # an untrustworthy score is the one to show
    assert heatmap_patches(verdict(scores, set()), RECIPE) == [12]
