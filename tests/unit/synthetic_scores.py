"""Synthetic scored kits for calibration and evaluation tests (no model involved).

A kit is products x runs acquisitions of 60 patches (3 frames x 5 vials x 4
regions). Good patches score around a per-region level; a defective product
has one defect (vial, region) that raises the score of that patch in every
frame by ``separation`` (times a per-run visibility, so some runs miss it).
"""
from __future__ import annotations

import numpy as np

from trainer.scoring import ScoredSet

REGION_LEVEL = np.array([0.015, 0.038, 0.046, 0.029])


def synthetic_kit(
    n_good: int = 12,
    n_defective: int = 12,
    runs: int = 10,
    separation: float = 0.02,
    noise: float = 0.004,
    seed: int = 0,
    frames: int = 3,
    vials: int = 5,
) -> ScoredSet:
    rng = np.random.default_rng(seed)
    cols: dict[str, list] = {k: [] for k in ("scores", "region", "vial", "frame", "acquisition_id", "product_id",
                                              "run_index", "patch_defective", "acquisition_defective")}
    for p in range(n_good + n_defective):
        defective = p >= n_good
        defect_vial, defect_region = int(rng.integers(vials)), int(rng.integers(4))
        for run in range(runs):
            visibility = rng.uniform(0.3, 1.5) if defective else 0.0
            for f in range(frames):
                for v in range(vials):
                    for r in range(4):
                        hit = defective and v == defect_vial and r == defect_region
                        score = REGION_LEVEL[r] + abs(rng.normal(0, noise)) + (separation * visibility if hit else 0.0)
                        cols["scores"].append(score)
                        cols["region"].append(r)
                        cols["vial"].append(v)
                        cols["frame"].append(f)
                        cols["acquisition_id"].append(f"P{p:03d}-run{run:02d}")
                        cols["product_id"].append(f"P{p:03d}")
                        cols["run_index"].append(run)
                        cols["patch_defective"].append(hit)
                        cols["acquisition_defective"].append(defective)
    scores = cols.pop("scores")
    n_batches = (n_good + n_defective) * runs
    return ScoredSet.from_columns(scores, **cols, batch_seconds=np.full(n_batches, 0.06),
                                  batch_sizes=np.full(n_batches, frames * vials * 4), runtime="synthetic")
