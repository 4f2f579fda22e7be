"""How much of each defect of a simulated kit the inspected pixels hold: figures for the lightest defects.

The issue asks that a defect beyond what the images show be shown so with figures, not hidden by an
easier kit. For each defective product and run of a kit (re-drawn from its seed exactly as
`trainer.cli simulate` drew it), the three inspected frames are rendered without sensor noise twice,
with the product's defects and without them, under the same pose, light, bubbles and slosh. Inside
the patches the inspector sees, their difference is the defect's signal Δ in grey levels; the noise
is the simulator's own (read + shot noise, plus the 8-bit rounding's 1/12 grey level²).

    d' = sqrt( sum over the defect's pixels and the 3 frames of (Δ / σ)² )

is what an ideal observer who knows exactly what the defect looks like and where it is could reach
against the sensor noise alone: an upper bound for any inspection, because the product's own
variation (bubbles, meniscus, slosh, pose) comes on top of it. An inspection must also search: among
the roughly 4e5 defect-sized places of an acquisition, finding a defect half the time at a 1 % false
reject rate takes d' of about Φ⁻¹(1 - 0.01 / 4e5) ≈ 5.5 (Rose's criterion for seeing a signal is 5).

    python -m trainer.cli visibility --seed 2 --good 20 --defective 20 --runs 10 \\
        --report model_repository/inspector/8/report.json

prints one row per defect (its kind, severity, vial and region, median peak |Δ| and d' over its runs)
and, per kind x severity band, the median d' beside the version's detection rate on that kit.
"""
from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from trainer.qualification import SEVERITY_BANDS, severity_band
from vialguard.patching import cut_frame_pixels
from vialguard.recipe import Recipe
from vialguard.simulator.handling import frame_state, pose_matrix
from vialguard.simulator.kit import plan_products, run_conditions
from vialguard.simulator.render import StripRenderer

QUANTISATION_VARIANCE = 1.0 / 12.0   # rounding to whole grey levels, in grey levels²
SEARCH_D_PRIME = 5.5                 # see the module docstring


@dataclass(frozen=True)
class DefectVisibility:
    """One defect of one product, over its runs."""

    product_id: str
    kind: str
    severity: float
    vial: int
    region: int
    peak_delta_grey: float      # median over runs of max |Δ| in the inspected patches
    d_prime: float              # median over runs
    d_prime_min: float
    d_prime_in_own_patch: float  # median d' of the patch of the defect's own vial and region

    @property
    def band(self) -> str:
        return severity_band(self.severity)


def _inspected_grey(renderer: StripRenderer, product: Any, layers: Any, run: Any, recipe: Recipe) -> list[np.ndarray]:
    """Noise-free grey levels (float, not rounded) of the inspected frames: light x transmission + offset."""
    matrix = pose_matrix(recipe, run)
    light255 = renderer.light(run) * np.float32(255.0)
    n = recipe.frames_per_acquisition
    frames = []
    for f in recipe.inspected_frames:
        t_cam = renderer.to_camera(renderer.transmission(layers, frame_state(product, run, f, n)), matrix, 1.0)
        frames.append(light255 * t_cam + np.float32(run.offset * 255.0))
    return frames


def acquisition_visibility(renderer: StripRenderer, recipe: Recipe, product: Any, with_defects: Any, clean: Any,
                           run: Any, own_patch: int) -> tuple[float, float, float]:
    """(peak |Δ|, d' over all inspected patches, d' of the defect's own patch) of one run."""
    sum_sq = own_sq = 0.0
    peak = 0.0
    for defective, good in zip(_inspected_grey(renderer, product, with_defects, run, recipe),
                               _inspected_grey(renderer, product, clean, run, recipe)):
        delta = cut_frame_pixels(defective - good, recipe)
        sigma2 = cut_frame_pixels(renderer.noise_sigma(good - np.float32(run.offset * 255.0), run) ** 2, recipe)
        z2 = delta.astype(np.float64) ** 2 / (sigma2 + QUANTISATION_VARIANCE)
        per_patch = z2.reshape(z2.shape[0], -1).sum(axis=1)
        sum_sq += float(per_patch.sum())
        own_sq += float(per_patch[own_patch])
        peak = max(peak, float(np.abs(delta).max()))
    return peak, float(np.sqrt(sum_sq)), float(np.sqrt(own_sq))


def kit_visibility(recipe: Recipe, good: int, defective: int, runs: int, seed: int,
                   severity_range: tuple[float, float] = (0.05, 1.0)) -> list[DefectVisibility]:
    """Every defect of the kit `trainer.cli simulate` draws with these counts and seed.

    A product with two defects is measured for each apart (the other one is left in both renderings).
    """
    renderer = StripRenderer(recipe)
    plans = plan_products(recipe, good, defective, seed, "kit", severity_range)
    out = []
    for number, plan in enumerate(plans):
        if not plan.defects:
            continue
        with_defects = renderer.product_layers(plan.shape, list(plan.defects))   # once per product
        for i, spec in enumerate(plan.defects):
            clean = renderer.product_layers(plan.shape, [d for j, d in enumerate(plan.defects) if j != i])
            own = spec.vial * len(recipe.regions) + spec.region
            figures = np.array([acquisition_visibility(renderer, recipe, plan.shape, with_defects, clean,
                                                       run_conditions(plan, number, r, seed), own)
                                for r in range(runs)])
            out.append(DefectVisibility(plan.product_id, spec.kind, round(spec.severity, 4), spec.vial, spec.region,
                                        float(np.median(figures[:, 0])), float(np.median(figures[:, 1])),
                                        float(figures[:, 1].min()), float(np.median(figures[:, 2]))))
    return out


def detection_by_band(report: dict[str, Any]) -> dict[tuple[str, str], dict[str, Any]]:
    """The version report's detection table, keyed by (kind, severity band)."""
    rows = report["qualification"]["detection_by_kind_and_severity"]
    return {(row["kind"], row["severity"]): row for row in rows}


def summary_lines(defects: Sequence[DefectVisibility], report: dict[str, Any] | None = None) -> list[str]:
    """Per defect, then per kind x band: d' beside the version's detection on the same kit."""
    lines = [f"{'product':8s} {'kind':15s} {'severity':>8s} {'vial':>4s} {'region':>6s} {'peak |Δ|':>9s} "
             f"{'d_prime':>8s} {'min':>7s} {'own patch':>9s}"]
    for d in sorted(defects, key=lambda d: (d.kind, d.severity)):
        lines.append(f"{d.product_id:8s} {d.kind:15s} {d.severity:8.3f} {d.vial:4d} {'R' + str(d.region):>6s} "
                     f"{d.peak_delta_grey:9.2f} {d.d_prime:8.1f} {d.d_prime_min:7.1f} {d.d_prime_in_own_patch:9.1f}")
    detection = detection_by_band(report) if report else {}
    lines += ["", f"per kind x severity band (an ideal searcher needs d' of about {SEARCH_D_PRIME}):",
              f"{'kind':15s} {'band':8s} {'defects':>7s} {'median d_prime':>14s} {'min d_prime':>11s}"
              + ("   detected (acquisitions, products)" if report else "")]
    groups: dict[tuple[str, str], list[DefectVisibility]] = {}
    for d in defects:
        groups.setdefault((d.kind, d.band), []).append(d)
    order = {name: i for i, (_, _, name) in enumerate(SEVERITY_BANDS)}
    for (kind, band), members in sorted(groups.items(), key=lambda kv: (kv[0][0], order[kv[0][1]])):
        d_primes = [m.d_prime for m in members]
        line = f"{kind:15s} {band:8s} {len(members):7d} {np.median(d_primes):14.1f} {min(d_primes):11.1f}"
        row = detection.get((kind, band))
        if row:
            a, p = row["acquisitions"], row["products"]
            line += f"   {a['detected']}/{a['n']} ({100 * a['rate']:.0f} %), {p['detected']}/{p['n']} products"
        lines.append(line)
    return lines


def write_json(defects: Sequence[DefectVisibility], path: Path) -> None:
    path.write_text(json.dumps([asdict(d) | {"band": d.band} for d in defects], indent=1))
