"""Verdicts for the HMI's unit tests, built the way WatchVerdicts builds them (protobuf -> VerdictView)."""
from __future__ import annotations

from hmi.verdicts import VerdictView, from_proto
from vialguard.v1 import inspection_pb2 as pb

FRAMES = (0, 7, 15)
THRESHOLDS = (0.10, 0.20, 0.30, 0.40)


def verdict(acquisition_id: str = "P0000-R00", product_id: str = "P0000", run_index: int = 0,
            over: dict[tuple[int, int, int], float] | None = None, stream_id: str = "1-0", decided_at: int = 1_000,
            accepts: int = 1, rejects: int = 0, product_decision: int = pb.PRODUCT_PENDING,
            base: float = 0.5) -> VerdictView:
    """60 patches at ``base`` x their threshold, except those in ``over``: (frame, vial, region) -> score."""
    over = over or {}
    patches = []
    for frame in FRAMES:
        for vial in range(5):
            for region in range(4):
                t = THRESHOLDS[region]
                score = over.get((frame, vial, region), base * t)
                patches.append(pb.PatchResult(frame=frame, vial=vial, region=region, region_id=f"R{region}",
                                              score=score, threshold=t, over=score > t))
    worst = max(p.score - p.threshold for p in patches)
    v = pb.Verdict(
        acquisition_id=acquisition_id, product_id=product_id, run_index=run_index,
        decision=pb.REJECT if any(p.over for p in patches) else pb.ACCEPT,
        strip_score=max(p.score for p in patches), worst_margin=worst, patches=patches, model_name="inspector",
        model_version=3, threshold_set="run", stream_id=stream_id, decided_at_unix_ms=decided_at,
        run_policy=pb.RunPolicyState(k=7, n=10, runs_seen=accepts + rejects, accepts=accepts, rejects=rejects,
                                     product_decision=product_decision),
        timings=pb.StageTimings(decode_ms=1, patching_ms=2, inference_ms=30, queue_ms=1.5, aggregation_ms=0.5),
    )
    return from_proto(v)
