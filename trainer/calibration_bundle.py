"""Calibrate every score on the calibration kit, serve one, and judge them all on the held-out kit.

A version serves one score (its calibration names it), but the report shows the
others beside it, each with its own thresholds placed on the same calibration kit,
so the choice of the served score is a measured one: the paper's phi, the local
score frame by frame, and the local score fused over the frames.

On disk (the run's work directory): ``calibration.json`` is the served score's
calibration; ``calibration-<score>.json`` and ``local_score-<score>.npz`` hold every
score's, so evaluate can rerun alone.
"""
from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from trainer.calibrate import calibrate
from trainer.calibrate_local import cross_fitted_scores, fit_local_model
from trainer.evaluate import Evaluation, evaluate, summary
from trainer.kit_maps import KitMaps, compute_kit_maps, keras_maps_fn
from trainer.qualification import DefectTruth
from vialguard.calibration import Calibration
from vialguard.errors import CalibrationError
from vialguard.local_score import MAP_SSIM, SCORE_KINDS, SCORE_LOCAL_FUSED, SCORE_PHI, LocalScoreModel, PatchLayout
from vialguard.recipe import Recipe

log = logging.getLogger(__name__)
DEFAULT_SCORE = SCORE_LOCAL_FUSED
SERVED_FILENAME = "calibration.json"


@dataclass(frozen=True)
class CalibratedScore:
    calibration: Calibration
    local: LocalScoreModel | None  # None for phi


@dataclass(frozen=True)
class CalibrationBundle:
    served: str
    scores: dict[str, CalibratedScore]

    @property
    def calibration(self) -> Calibration:
        return self.scores[self.served].calibration

    @property
    def local(self) -> LocalScoreModel | None:
        return self.scores[self.served].local

    def save(self, directory: Path) -> None:
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        self.calibration.save(directory / SERVED_FILENAME)
        for kind, item in self.scores.items():
            item.calibration.save(directory / f"calibration-{kind}.json")
            if item.local is not None:
                (directory / f"local_score-{kind}.npz").write_bytes(item.local.to_bytes())

    @classmethod
    def load(cls, directory: Path) -> "CalibrationBundle":
        directory = Path(directory)
        served = Calibration.load(directory / SERVED_FILENAME).score
        scores = {}
        for kind in SCORE_KINDS:
            path = directory / f"calibration-{kind}.json"
            if not path.is_file():
                continue
            local_path = directory / f"local_score-{kind}.npz"
            local = LocalScoreModel.from_bytes(local_path.read_bytes()) if local_path.is_file() else None
            scores[kind] = CalibratedScore(Calibration.load(path), local)
        if served not in scores:
            raise CalibrationError(f"{directory} names '{served}' as served but holds no calibration-{served}.json")
        return cls(served, scores)


def calibrate_scores(kit: KitMaps, *, served: str, profile: str, patch_size: int, recipe: Recipe,
                     training_data_digest: str, kinds: Iterable[str] = SCORE_KINDS) -> CalibrationBundle:
    """Every score of ``kinds`` calibrated on the kit (local ones out of fold); ``served`` must be one."""
    kinds = list(kinds)
    if served not in kinds:
        raise CalibrationError(f"the served score '{served}' must be among the calibrated ones {kinds}")
    scores = {}
    for kind in kinds:
        scored = cross_fitted_scores(kit, kind)
        try:
            cal = calibrate(scored, profile=profile, patch_size=patch_size, recipe=recipe,
                            training_data_digest=training_data_digest, score=kind)
        except CalibrationError as exc:
            if kind == served:
                raise
            log.warning("the %s score cannot be calibrated on this kit (%s): left out of the comparison", kind, exc)
            continue
        local = None if kind == SCORE_PHI else fit_local_model(kit, kind == SCORE_LOCAL_FUSED)
        scores[kind] = CalibratedScore(cal, local)
        log.info("calibrated %s: serving %s thresholds %s", kind, cal.serving, cal.serving_thresholds.as_mapping())
    return CalibrationBundle(served, scores)


def kit_maps(generator: Any, stream: Iterable[tuple[Any, Mapping[str, Any]]], recipe: Recipe,
             bundle: CalibrationBundle | None = None, anomaly_map: str = MAP_SSIM) -> KitMaps:
    """One generator pass over a kit: maps kept (calibration, of ``anomaly_map``) or exact scores of
    the bundle's local scores (of the map their statistics are of)."""
    from trainer.inspector import scored_map

    layout = PatchLayout.from_recipe(recipe)
    anomaly_map = scored_map(generator, anomaly_map)
    if bundle is None:
        return compute_kit_maps(keras_maps_fn(generator, anomaly_map, layout), stream, layout,
                                anomaly_map=anomaly_map)
    exact = {kind: item.local for kind, item in bundle.scores.items() if item.local is not None}
    sources = {m.anomaly_map for m in exact.values()} or {MAP_SSIM}
    if len(sources) != 1:
        raise CalibrationError(f"the bundle's local scores are of different maps {sorted(sources)}")
    source = sources.pop()
    return compute_kit_maps(keras_maps_fn(generator, source, layout), stream, layout, exact_models=exact,
                            keep_maps=False, anomaly_map=source)


def evaluate_scores(kit: KitMaps, bundle: CalibrationBundle,
                    defects: Mapping[str, list[DefectTruth]] | None = None) -> Evaluation:
    """Tables 1-3 of the served score with the others compared beside it."""
    scored = {kind: (kit.table if item.local is None else kit.exact_scored(kind))
              for kind, item in bundle.scores.items()}
    comparison = {kind: summary(scored[kind], item.calibration) for kind, item in bundle.scores.items()}
    return evaluate(scored[bundle.served], bundle.calibration, defects, comparison)
