"""The calibration of one model version: its thresholds, run policy and provenance.

Lives in ``model_repository/inspector/<version>/calibration.json`` beside the model
(DESIGN invariant 3). The aggregator applies the ``serving`` thresholds of the
version that produced the scores; the other sets are kept for the report.

Threshold sets, as in the paper's tables:
- ``patch``: maximise per-patch accuracy per region (Table 1),
- ``strip``: re-tuned for the strip rule, eq. 13 (Table 2),
- ``run``:   re-tuned for the k-of-n run policy (Table 3).

``serving`` names the set the aggregator applies: ``run`` only where the run-level
re-tuning beat the strip thresholds under cross-validation on the calibration kit,
else ``strip``. ``score`` names which score the thresholds are on (see
vialguard.local_score: ``phi``, ``local`` or ``local-fused``).
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from vialguard.decision import RegionThresholds, RunPolicy
from vialguard.errors import CalibrationError
from vialguard.local_score import SCORE_KINDS

SCHEMA_VERSION = 1
THRESHOLD_SETS = ("patch", "strip", "run")


@dataclass(frozen=True)
class Calibration:
    profile: str
    patch_size: int
    recipe_id: str
    recipe_digest: str
    training_data_digest: str
    thresholds: dict[str, RegionThresholds]
    serving: str = "run"
    run_policy: RunPolicy = RunPolicy()
    score: str = "phi"
    metrics: dict[str, Any] = field(default_factory=dict)
    created_utc: str = ""

    def __post_init__(self) -> None:
        if self.score not in SCORE_KINDS:
            raise CalibrationError(f"calibration names score '{self.score}'; known scores: {list(SCORE_KINDS)}")

    @property
    def serving_thresholds(self) -> RegionThresholds:
        return self.thresholds[self.serving]

    def to_json(self) -> dict[str, Any]:
        return {
            "schema": SCHEMA_VERSION,
            "profile": self.profile,
            "patch_size": self.patch_size,
            "recipe_id": self.recipe_id,
            "recipe_digest": self.recipe_digest,
            "training_data_digest": self.training_data_digest,
            "thresholds": {name: t.as_mapping() for name, t in self.thresholds.items()},
            "serving": self.serving,
            "score": self.score,
            "run_policy": {"k": self.run_policy.k, "n": self.run_policy.n},
            "metrics": self.metrics,
            "created_utc": self.created_utc,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> "Calibration":
        try:
            if data.get("schema") != SCHEMA_VERSION:
                raise CalibrationError(f"calibration schema {data.get('schema')!r} is not {SCHEMA_VERSION}")
            thresholds = {name: RegionThresholds.from_mapping(t) for name, t in data["thresholds"].items()}
            serving = data.get("serving", "run")
            if serving not in thresholds:
                raise CalibrationError(f"serving threshold set '{serving}' is not in {sorted(thresholds)}")
            policy = data.get("run_policy", {})
            return cls(
                profile=str(data["profile"]),
                patch_size=int(data["patch_size"]),
                recipe_id=str(data["recipe_id"]),
                recipe_digest=str(data["recipe_digest"]),
                training_data_digest=str(data["training_data_digest"]),
                thresholds=thresholds,
                serving=serving,
                run_policy=RunPolicy(int(policy.get("k", 7)), int(policy.get("n", 10))),
                score=str(data.get("score", "phi")),
                metrics=dict(data.get("metrics", {})),
                created_utc=str(data.get("created_utc", "")),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise CalibrationError(f"calibration is malformed: {exc!r}") from exc

    def save(self, path: Path) -> None:
        path.write_text(json.dumps(self.to_json(), indent=2, sort_keys=True) + "\n")

    @classmethod
    def load(cls, path: Path) -> "Calibration":
        if not path.is_file():
            raise CalibrationError(f"no calibration file at {path}")
        try:
            data = json.loads(path.read_text())
        except json.JSONDecodeError as exc:
            raise CalibrationError(f"calibration file {path} is not JSON: {exc}") from exc
        return cls.from_json(data)
