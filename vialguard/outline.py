"""The vial's outline at sub-pixel precision: the one-pixel bump the strip map's tolerance absorbs.

The strip map (vialguard.strip_reference) compares each vial with the range its neighbours take
over 5 x 5 pixels, so that good vials' outline and pose differences do not count; a neck bump of
severity 0.1 (a 1.2 px bulge of the outline over 5 rows) stays inside that range. Yet good vials'
outlines are smooth: on a held-out kit the strip's vials differ from their median by up to 2 px
as a whole, but by 0.01-0.04 px from their own 15-row running median in the neck. So:

    edge(y)     = per row, the left and right outline column: the peak of |horizontal gradient|
                  in each half of the patch, refined by a parabola through its neighbours
    deviation   = | edge - running median of edge over 15 rows |, averaged over the 3 frames
                  (the product does not move within an acquisition; bubbles and noise do)
    z(y)        = (deviation - good mean) / good spread, per region, side and row (good
                  calibration vials, spread floored)
    score(v, r) = max over rows and sides of z

This module is the numpy reference of that measurement; trainer.outline_tf is its TensorFlow twin,
which trainer.onnx_outline_graph folds into a version's score (R1 from version 9: on version 8's
held-out kit it finds the missed neck bump in 10 of 10 acquisitions, no good acquisition over the
highest good calibration vial).
"""
from __future__ import annotations

import io
from dataclasses import dataclass, replace

import numpy as np

from vialguard.local_score import PatchLayout

HIGH_PASS_ROWS = 15        # longer than a bump (4-16 rows), shorter than the neck's curvature
MIN_EDGE_STEP = 0.03       # |gradient| in [0, 1] units below which a row has no edge
SPREAD_FLOOR = 0.02        # px: the spread of a perfectly steady row is not zero
EDGE_ROWS_SKIPPED = 8      # rows at each end, where the running median runs out of rows


def edge_columns(images: np.ndarray, min_step: float = MIN_EDGE_STEP) -> np.ndarray:
    """[..., H, W] in [0, 1] -> [..., 2, H]: sub-pixel column of the left and right outline per row.

    The outline is where the backlight meets the plastic: the largest |horizontal gradient| of each
    half of the patch, refined by the vertex of the parabola through it and its two neighbours.
    NaN where a row's largest step is under ``min_step`` (no outline on that row).
    """
    x = np.asarray(images, np.float32)
    gradient = np.abs(np.diff(x, axis=-1))
    half = gradient.shape[-1] // 2
    sides = []
    for part, offset in ((gradient[..., :half], 0), (gradient[..., half:], half)):
        peak = np.clip(np.argmax(part, axis=-1), 1, part.shape[-1] - 2)
        left, centre, right = (np.take_along_axis(part, (peak + d)[..., None], -1)[..., 0] for d in (-1, 0, 1))
        curvature = left - 2 * centre + right
        safe = np.where(curvature == 0, 1.0, curvature)
        vertex = np.where(curvature != 0, np.clip(0.5 * (left - right) / safe, -0.5, 0.5), 0.0)
        column = (offset + peak).astype(np.float32) + vertex.astype(np.float32)  # float32, as the served graph
        sides.append(np.where(centre >= min_step, column, np.float32(np.nan)))
    return np.stack(sides, axis=-2)


def running_median(x: np.ndarray, rows: int = HIGH_PASS_ROWS) -> np.ndarray:
    """Median of [..., H] over ``rows`` rows centred on each row (edge rows repeated at the ends)."""
    half = rows // 2
    padded = np.pad(x, [(0, 0)] * (x.ndim - 1) + [(half, half)], mode="edge")
    return np.median(np.lib.stride_tricks.sliding_window_view(padded, rows, axis=-1), axis=-1)


def outline_deviation(acquisition: np.ndarray, layout: PatchLayout, regions: tuple[int, ...]) -> np.ndarray:
    """One acquisition's patches [F*V*R, P, P(, 1)] (vialguard.patching's order) -> [V, len(regions), 2, P].

    How far each row's outline leaves its own 15-row running median, in px, averaged over the
    frames; 0 on rows without an outline.
    """
    x = np.asarray(acquisition, np.float32)
    if x.ndim == 4:
        x = x[..., 0]
    if x.shape[0] != layout.per_acquisition:
        raise ValueError(f"an acquisition holds {layout.per_acquisition} patches, got {x.shape[0]}")
    per = x.reshape(layout.frames, layout.vials, layout.regions, *x.shape[-2:])[:, :, list(regions)]
    edges = edge_columns(per)                                            # [F, V, R', 2, P]
    found = np.isfinite(edges)
    count = found.sum(axis=0).astype(np.float32)
    seen = count > 0
    mean = np.where(found, edges, np.float32(0)).sum(axis=0, dtype=np.float32) / np.maximum(count, np.float32(1))
    # Rows without an outline take the mean of the rows with one, so the running median stays put.
    rows_seen = seen.sum(axis=-1, keepdims=True).astype(np.float32)
    level = np.where(seen, mean, np.float32(0)).sum(axis=-1, keepdims=True, dtype=np.float32) / np.maximum(
        rows_seen, np.float32(1))
    filled = np.where(seen, mean, level).astype(np.float32)
    return np.where(seen, np.abs(filled - running_median(filled)), np.float32(0))


@dataclass(frozen=True)
class OutlineModel:
    """What good vials' outlines do, per region, side and row: the z of a deviation and its score."""

    regions: tuple[int, ...]
    mean: np.ndarray    # [R', 2, P] px
    spread: np.ndarray  # [R', 2, P] px, floored
    threshold: float = float("inf")   # z over which a vial is rejected (set by the calibration kit)

    @classmethod
    def fit(cls, good: np.ndarray, regions: tuple[int, ...], floor: float = SPREAD_FLOOR) -> "OutlineModel":
        """From good acquisitions' deviations [A, V, R', 2, P] (every vial of a good strip counts)."""
        g = np.asarray(good, np.float64)
        if g.ndim != 5 or g.shape[2] != len(regions) or g.shape[0] < 2:
            raise ValueError(f"need [A >= 2, V, {len(regions)}, 2, P] good deviations, got {g.shape}")
        per_vial = g.reshape(-1, *g.shape[2:])
        return cls(tuple(regions), per_vial.mean(axis=0), np.maximum(per_vial.std(axis=0), floor))

    def scores(self, deviation: np.ndarray) -> np.ndarray:
        """[..., V, R', 2, P] deviations -> [..., V, R'] scores: the largest z over rows and sides."""
        z = (np.asarray(deviation, np.float64) - self.mean) / self.spread
        return z[..., EDGE_ROWS_SKIPPED:-EDGE_ROWS_SKIPPED].max(axis=(-1, -2))

    def with_threshold(self, threshold: float) -> "OutlineModel":
        return replace(self, threshold=float(threshold))

    def to_bytes(self) -> bytes:
        """As an .npz (outline.npz in a version)."""
        buffer = io.BytesIO()
        np.savez(buffer, regions=np.array(self.regions, np.int64), mean=self.mean, spread=self.spread,
                 threshold=np.float64(self.threshold))
        return buffer.getvalue()

    @classmethod
    def from_bytes(cls, data: bytes) -> "OutlineModel":
        with np.load(io.BytesIO(data)) as z:
            return cls(tuple(int(r) for r in z["regions"]), z["mean"], z["spread"], float(z["threshold"]))
