"""What the preprocessor and the aggregator say to each other through Redis.

One stream of scores (preprocessor -> aggregator, consumer group), one stream of
verdicts (aggregator -> operator screens, machine controller, preprocessor
WatchVerdicts), and one reply key per acquisition that the waiting preprocessor
blocks on. Messages are JSON in a single ``data`` field, so that a field added
later cannot be silently dropped by one side.
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import Any

SCORES_STREAM = "vialguard:scores"
VERDICTS_STREAM = "vialguard:verdicts"
CONSUMER_GROUP = "aggregators"
SCORES_STREAM_MAXLEN = 100_000      # approximate trim: hours of production, bounded memory
VERDICTS_STREAM_MAXLEN = 100_000


def verdict_key(acquisition_id: str) -> str:
    """Holds the verdict JSON once decided: the idempotency record of the aggregator."""
    return f"vialguard:verdict:{acquisition_id}"


def reply_key(acquisition_id: str) -> str:
    """A list the preprocessor BLPOPs on to receive the verdict of its acquisition."""
    return f"vialguard:reply:{acquisition_id}"


def product_key(product_id: str) -> str:
    """Hash run_index -> ACCEPT/REJECT: the run-policy state of one product."""
    return f"vialguard:product:{product_id}"


def heartbeat_key(consumer: str) -> str:
    """Set with a TTL by an aggregator's loop each time it turns; its age tells the probe the loop runs."""
    return f"vialguard:heartbeat:{consumer}"


HEARTBEAT_TTL_MS = 120_000


def heatmap_key(acquisition_id: str) -> str:
    """Hash patch index -> PNG bytes of the heatmaps of a rejected acquisition (expiring)."""
    return f"vialguard:heatmaps:{acquisition_id}"


@dataclass
class PatchScore:
    frame: int
    vial: int
    region: int
    score: float               # the score the version's thresholds apply to
    phi: float | None = None   # the paper's 1 - SSIM of the same patch, for the record


@dataclass
class ScoresMessage:
    """Preprocessor -> aggregator: the scores of one acquisition and where they came from."""

    acquisition_id: str
    product_id: str
    run_index: int
    recipe_id: str
    model_name: str
    model_version: int
    patches: list[PatchScore]
    timings_ms: dict[str, float] = field(default_factory=dict)
    camera_timestamp_ns: int = 0
    received_unix_ms: int = 0

    def to_fields(self) -> dict[str, str]:
        return {"acquisition_id": self.acquisition_id, "data": json.dumps(asdict(self))}

    @classmethod
    def from_fields(cls, fields: dict[Any, Any]) -> "ScoresMessage":
        raw = fields.get(b"data", fields.get("data"))
        data = json.loads(raw)
        data["patches"] = [PatchScore(**p) for p in data["patches"]]
        return cls(**data)


@dataclass
class PatchVerdict:
    frame: int
    vial: int
    region: int
    score: float
    threshold: float
    over: bool


@dataclass
class RunPolicyState:
    """Where a product stands under the k-of-n run policy after this acquisition."""

    k: int
    n: int
    runs_seen: int
    accepts: int
    rejects: int
    product_decision: str  # ACCEPT / REJECT / PENDING


@dataclass
class VerdictMessage:
    """Aggregator -> everyone: the decision on one acquisition."""

    acquisition_id: str
    product_id: str
    run_index: int
    decision: str  # ACCEPT / REJECT
    strip_score: float
    worst_margin: float
    model_name: str
    model_version: int
    threshold_set: str
    patches: list[PatchVerdict]
    run_policy: RunPolicyState
    timings_ms: dict[str, float] = field(default_factory=dict)
    decided_unix_ms: int = 0

    def to_json(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, raw: str | bytes) -> "VerdictMessage":
        data = json.loads(raw)
        data["patches"] = [PatchVerdict(**p) for p in data["patches"]]
        data["run_policy"] = RunPolicyState(**data["run_policy"])
        return cls(**data)
