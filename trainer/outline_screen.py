"""Screen the sub-pixel outline measurement (vialguard.outline) on a calibration kit and a held-out kit.

What the outline alone would add, before (or beside) a version that serves it (trainer.onnx_outline_graph,
which takes its statistics and threshold from ``fit_outline``). Good vials of the calibration kit give each region's
statistics and its threshold (the highest good calibration vial's score: no good calibration vial is
over it); the held-out kit then gives the share of good acquisitions that would be rejected for it and,
for every defective vial of the region, its scores and how many of its runs are over the threshold.

    python -m trainer.cli outline --calibration W/patches/calibration --test W/patches/test --regions 1
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from trainer.chain import kit_stream
from trainer.kit_maps import patch_order
from trainer.qualification import kit_defects
from trainer.shard_index import load_index
from vialguard.local_score import PatchLayout
from vialguard.outline import OutlineModel, outline_deviation
from vialguard.recipe import Recipe


@dataclass(frozen=True)
class KitOutlines:
    """Every acquisition's outline deviations [A, V, R', 2, P] with its product, label and defective patches."""

    deviation: np.ndarray
    product: np.ndarray        # [A]
    defective: np.ndarray      # [A] acquisition label
    patch_defective: np.ndarray  # [A, V, R'] (first frame's ground truth; a defect stays in every frame)


def kit_outlines(patches: Path, recipe: Recipe, regions: tuple[int, ...]) -> KitOutlines:
    """One pass over an ingested kit (patches of the inspected frames)."""
    layout = PatchLayout.from_recipe(recipe)
    deviation, product, defective, patch_defective = [], [], [], []
    for batch, meta in kit_stream(patches, recipe):
        order = patch_order(meta, layout)
        deviation.append(outline_deviation(np.asarray(batch, np.float32)[order], layout, regions))
        product.append(str(np.asarray(meta["product_id"])[0]))
        defective.append(bool(np.asarray(meta["acquisition_defective"])[0]))
        flags = np.asarray(meta["patch_defective"])[order].reshape(layout.frames, layout.vials, layout.regions)
        patch_defective.append(flags.any(axis=0)[:, list(regions)])
    return KitOutlines(np.stack(deviation), np.array(product), np.array(defective), np.stack(patch_defective))


def screen_lines(calibration: KitOutlines, test: KitOutlines, regions: tuple[int, ...],
                 defects: dict[str, list] | None = None) -> list[str]:
    """Per region: threshold, good held-out acquisitions over it, each defective vial's runs over it."""
    model = OutlineModel.fit(calibration.deviation[~calibration.defective], regions)
    cal_scores, test_scores = model.scores(calibration.deviation), model.scores(test.deviation)   # [A, V, R']
    lines = []
    for i, region in enumerate(regions):
        threshold = float(cal_scores[~calibration.defective][:, :, i].max())
        good_over = test_scores[~test.defective][:, :, i].max(axis=1) > threshold
        lines.append(f"R{region}: threshold {threshold:.1f} z (the highest good calibration vial); good held-out "
                     f"acquisitions over it: {int(good_over.sum())} of {good_over.size}")
        flagged = test.patch_defective[:, :, i]
        for product in sorted(set(test.product[flagged.any(axis=1)])):
            rows = test.product == product
            vial = int(flagged[rows].any(axis=0).argmax())
            scores = test_scores[rows][:, vial, i]
            what = [f"{d.kind} {d.severity:.3f}" for d in (defects or {}).get(product, []) if d.region == region]
            lines.append(f"  {product} vial {vial} ({', '.join(what) or 'defective'}): median {np.median(scores):.1f} z, "
                         f"{int((scores > threshold).sum())} of {scores.size} runs over the threshold")
    return lines


def fit_outline(calibration: KitOutlines, regions: tuple[int, ...]) -> OutlineModel:
    """Statistics from the calibration kit's good vials; threshold = the highest good calibration vial's score."""
    good = calibration.deviation[~calibration.defective]
    model = OutlineModel.fit(good, regions)
    return model.with_threshold(float(model.scores(good).max()))


def screen(calibration: Path, test: Path, recipe: Recipe, regions: tuple[int, ...]) -> list[str]:
    source = Path(load_index(test).source)
    defects = kit_defects(source) if (source / "manifest.jsonl").is_file() else None
    return screen_lines(kit_outlines(calibration, recipe, regions), kit_outlines(test, recipe, regions), regions,
                        defects)
