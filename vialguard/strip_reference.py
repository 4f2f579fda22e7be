"""The strip as its own reference: each vial judged against the other vials of the same frame.

Wafer inspection compares each die with its neighbours (die-to-die): whatever the
process did to the whole wafer cancels, and what one die has alone stands out. A BFS
strip is five identical vials moulded together, seen in the same frame under the
same light and pose, so the same holds here: a burn, a scratch, foam, a bump on a
cap or a neck lives on one vial; the relief of the flag, the outline, the light and
the pose are shared by all five. The generator's residual misses the defects it
reconstructs (a smooth burn, a bump of solid plastic); the other vials never have them.

For each frame:

    column_v = the vial's regions stacked (R0..R3 are one contiguous 1024 x 256 column)
    column_v = Gaussian(column_v, sigma)                     sensor noise averaged out
    column_v = column_v x mean over vials of mean(column) / mean(column_v)
                                                             the light's gradient across the strip cancels
                                                             (step and menisci below are found before it)
    step     = vertical shift per vial pitch that best aligns neighbouring vials
               (the strip's rotation; the same for all frames of an acquisition);
               in the liquid region, the difference of the two vials' meniscus rows
    low_o, high_o = min and max of column_o over tolerance x tolerance pixels
    for every other vial o, both shifted by (o - v) x step (linear, edge rows kept):
        d_o = how far column_v lies outside [low_o, high_o]
    map_v = min over o of d_o                                a defect differs from every other vial
    liquid region of map_v moved by whole rows so that the vial's mean meniscus over the frames
               sits on one reference row (liquid_reference_row): the statistics that follow see
               the liquid body in the meniscus's own rows (the same shift for every frame, so the
               minimum over the frames still compares one place of the tube)

Pixels are the patches' [0, 1] values; the map is cropped to the 1 - SSIM map's size so
both go through the same smoothing, fusion over frames and per-pixel normalisation
(vialguard.local_score). This module is the numpy reference; trainer.strip_reference_tf is
the same arithmetic for the served graph, tested against it.
"""
from __future__ import annotations

from dataclasses import dataclass, replace

import cv2
import numpy as np

from vialguard.errors import CalibrationError
from vialguard.local_score import smoothing_kernel
from vialguard.recipe import Recipe

SSIM_CROP = 5  # the 11 x 11 SSIM window's valid output loses 5 px on each side


@dataclass(frozen=True)
class StripReferenceParams:
    """Sigma of the noise smoothing, the alignment tolerance and the rotation search grid.

    Chosen on the calibration kit (tolerance 3/5, sigma 0/1: 5 and 1 did best).
    """

    sigma: float = 1.0
    tolerance: int = 5
    max_step_px: float = 3.5   # shift between neighbouring vials: 256 px x tan(0.7 deg) is 3.1 px
    step_px: float = 0.25
    # The liquid region (R2, a straight stretch of tube) is aligned by each vial's meniscus
    # instead: fill levels differ from vial to vial by up to 30 px and slosh between frames,
    # and the tube looks the same at any height. The meniscus is the darkest row of the
    # vial's central columns within these rows of the region; -1 turns this off.
    liquid_region: int = 2
    meniscus_rows: tuple[int, int] = (30, 130)
    meniscus_half_width: int = 40
    # The backlight is not flat across a 1280 px strip (the simulator's gradient reaches
    # +-4 %, 1.6 % from one vial to the next: 3 grey levels, more than the blurred noise's
    # range), so the other vials' range missed every pixel of a vial by a little, end
    # vials (neighbours on one side only) twice as much as inner ones. Each vial's column
    # is scaled to the strip's mean brightness in that frame first. Measured on the
    # held-out kit (2026-12-02, with smoothing after the fusion and the floor of
    # trainer.calibrate_local): strip AUROC 0.891 -> 0.905, false rejects of good strips
    # 19 -> 5 of 200; version 6 was made without it.
    equalise_light: bool = True
    # The liquid region's map is handed on in the vial's own meniscus rows: each vial's map of
    # that region is moved (whole rows, the same for all frames, zeros beyond) so that the mean
    # of its menisci over the frames lands on this row of the patch; -1 keeps camera rows. Bubbles
    # ride 10-45 px under a moving meniscus and foam sits at its resting level, but fill levels
    # differ by up to 30 px, so in camera rows the good statistics (vialguard.local_score) mixed
    # the two. From version 8; version 7 and earlier: -1.
    liquid_reference_row: int = 80
    # The patch side the pixel figures above are in (the recipe's native 256 px). A profile that
    # resamples the regions to another side gets them scaled by at_side (the resolution curve).
    native_side: int = 256

    def at_side(self, side: int) -> "StripReferenceParams":
        """These settings for patches of ``side`` px: every length scaled by side / native_side (the
        tolerance to at least 1 px, a step grid of the same count); themselves at the native side."""
        if side == self.native_side:
            return self
        f = side / self.native_side
        first, last = self.meniscus_rows
        return replace(self, sigma=self.sigma * f, tolerance=max(1, int(round(self.tolerance * f))),
                       max_step_px=self.max_step_px * f, step_px=self.step_px * f,
                       meniscus_rows=(int(round(first * f)), int(round(last * f))),
                       meniscus_half_width=max(1, int(round(self.meniscus_half_width * f))), native_side=side,
                       liquid_reference_row=(self.liquid_reference_row if self.liquid_reference_row < 0
                                             else int(round(self.liquid_reference_row * f))))

    @property
    def steps(self) -> np.ndarray:
        n = int(round(self.max_step_px / self.step_px))
        return (np.arange(-n, n + 1) * self.step_px).astype(np.float32)



def check_recipe(recipe: Recipe) -> None:
    """The strip reference needs each vial's regions to tile one column at native size, vials at
    one pitch; a CalibrationError says what this recipe does otherwise."""
    xs = [x for x, _ in recipe.vials]
    ys = {y for _, y in recipe.vials}
    pitches = {b - a for a, b in zip(xs, xs[1:])}
    if len(recipe.vials) < 3 or len(ys) != 1 or len(pitches) != 1:
        raise CalibrationError(f"recipe '{recipe.id}': the strip reference needs at least 3 vials on one row at one "
                               f"pitch, got vials at {list(recipe.vials)}")
    p = recipe.patch_size
    first = recipe.regions[0].rect
    y = first.y
    for region in recipe.regions:
        r = region.rect
        if (r.x, r.width, r.height, r.y) != (first.x, p, p, y):
            raise CalibrationError(f"recipe '{recipe.id}': the strip reference needs regions of {p} x {p} px "
                                   f"stacked without gaps in one column; region {region.id} is at ({r.x}, {r.y}) "
                                   f"{r.width} x {r.height}")
        y += r.height


def _per_image(x: np.ndarray, op) -> np.ndarray:  # type: ignore[no-untyped-def]
    flat = np.ascontiguousarray(x, np.float32).reshape(-1, *x.shape[-2:])
    return np.stack([op(img) for img in flat]).reshape(x.shape)


def blur(columns: np.ndarray, sigma: float) -> np.ndarray:
    """Separable Gaussian of [..., H, W], symmetric padding (as tf.pad 'SYMMETRIC')."""
    if sigma <= 0:
        return columns.astype(np.float32)
    k = smoothing_kernel(sigma)
    return _per_image(columns, lambda img: cv2.sepFilter2D(img, cv2.CV_32F, k, k, borderType=cv2.BORDER_REFLECT))


LIGHT_EPS = 1e-6  # a black column keeps its zeros instead of dividing by zero


def equalise_light(columns: np.ndarray) -> np.ndarray:
    """[F, V, H, W] columns, each scaled so that its mean is the mean of its frame's columns."""
    mean = columns.mean(axis=(-2, -1), dtype=np.float64).astype(np.float32)                 # [F, V]
    gain = mean.mean(axis=1, keepdims=True) / np.maximum(mean, np.float32(LIGHT_EPS))
    return (columns * gain[..., None, None]).astype(np.float32)


def shift_rows(column: np.ndarray, dy: float) -> np.ndarray:
    """out[y] = column[y + dy] along axis -2, linear, rows beyond the edges repeat the edge row."""
    h = column.shape[-2]
    n = int(np.floor(dy))
    frac = np.float32(dy - n)
    rows = np.arange(h)
    lo = column[..., np.clip(rows + n, 0, h - 1), :]
    hi = column[..., np.clip(rows + n + 1, 0, h - 1), :]
    return (lo * (np.float32(1) - frac) + hi * frac).astype(np.float32)


def vial_step(columns: np.ndarray, params: StripReferenceParams) -> float:
    """Shift per vial pitch aligning neighbouring vials, from [F, V, H, W] blurred columns.

    Judged at half resolution on all frames together: the pose is the acquisition's.
    """
    small = columns[:, :, ::2, ::2]
    costs = []
    for s in params.steps:
        shifted = shift_rows(small[:, 1:], float(s) / 2)
        costs.append(float(np.abs(small[:, :-1] - shifted).mean(dtype=np.float64)))
    return float(params.steps[int(np.argmin(costs))])


def meniscus_rows(columns: np.ndarray, patch: int, params: StripReferenceParams) -> np.ndarray:
    """[F, V, H, W] blurred columns -> [F, V] int: the darkest row of the central columns in the
    liquid region's meniscus rows, in column coordinates."""
    first, last = params.meniscus_rows
    top = params.liquid_region * patch
    c, half = columns.shape[-1] // 2, params.meniscus_half_width
    profile = columns[..., top + first:top + last, c - half:c + half].mean(axis=-1, dtype=np.float64)
    return (np.argmin(profile, axis=-1) + top + first).astype(np.int64)


def reference_shifts(menisci: np.ndarray, patch: int, params: StripReferenceParams) -> np.ndarray:
    """[F, V] meniscus rows (column coordinates) -> [V] whole-row shifts that put each vial's mean
    meniscus over the frames on ``liquid_reference_row`` of the liquid region (floor(mean + 0.5))."""
    mean = menisci.astype(np.float32).mean(axis=0, dtype=np.float32)
    level = np.floor(mean + np.float32(0.5)).astype(np.int64)
    return level - params.liquid_region * patch - params.liquid_reference_row


def shift_whole_rows(x: np.ndarray, dy: int) -> np.ndarray:
    """out[..., y, :] = x[..., y + dy, :], zeros where y + dy falls outside."""
    out = np.zeros_like(x)
    h = x.shape[-2]
    if abs(dy) >= h:
        return out
    if dy >= 0:
        out[..., :h - dy, :] = x[..., dy:, :]
    else:
        out[..., -dy:, :] = x[..., :h + dy, :]
    return out


def window_extreme(x: np.ndarray, size: int, reduce: str) -> np.ndarray:
    """Min or max of [..., H, W] over size x size pixels (the window shrinks at the edges, as a
    max pool with 'SAME' padding does)."""
    kernel = np.ones((size, size), np.uint8)
    op = cv2.dilate if reduce == "max" else cv2.erode
    return _per_image(x, lambda img: op(img, kernel))


def strip_maps(patches: np.ndarray, frames: int, vials: int, regions: int,
               params: StripReferenceParams = StripReferenceParams()) -> np.ndarray:
    """[N, P, P] patches in [0, 1] (vialguard.patching's order, whole acquisitions) -> [N, P-10, P-10] maps."""
    x = np.asarray(patches, np.float32)
    if x.ndim == 4:
        x = x[..., 0]
    n, p = x.shape[0], x.shape[-1]
    params = params.at_side(p)
    per = frames * vials * regions
    if n % per:
        raise ValueError(f"{n} patches are not whole acquisitions of {per}")
    if params.liquid_region >= regions:
        raise ValueError(f"the liquid region R{params.liquid_region} is not among the {regions} regions")
    out = np.empty((n, p - 2 * SSIM_CROP, p - 2 * SSIM_CROP), np.float32)
    for a in range(n // per):
        acq = x[a * per:(a + 1) * per].reshape(frames, vials, regions * p, p)
        cols = blur(acq, params.sigma)
        step = vial_step(cols, params)  # the rotation and the menisci from the columns as blurred
        liquid = slice(params.liquid_region * p, (params.liquid_region + 1) * p) if params.liquid_region >= 0 else None
        menisci = meniscus_rows(cols, p, params) if liquid is not None else None
        if params.equalise_light:
            cols = equalise_light(cols)
        lows = window_extreme(cols, params.tolerance, "min")
        highs = window_extreme(cols, params.tolerance, "max")
        maps = np.empty_like(cols)
        for v in range(vials):
            best = None
            for o in range(vials):
                if o == v:
                    continue
                lo, hi = shift_rows(lows[:, o], (o - v) * step), shift_rows(highs[:, o], (o - v) * step)
                if liquid is not None and menisci is not None:
                    for f in range(frames):
                        dy = float(menisci[f, o] - menisci[f, v])
                        lo[f, liquid] = shift_rows(lows[f, o], dy)[liquid]
                        hi[f, liquid] = shift_rows(highs[f, o], dy)[liquid]
                d = np.maximum(np.maximum(lo - cols[:, v], cols[:, v] - hi), 0)
                best = d if best is None else np.minimum(best, d)
            maps[:, v] = best
        if liquid is not None and menisci is not None and params.liquid_reference_row >= 0:
            for v, dy in enumerate(reference_shifts(menisci, p, params)):
                maps[:, v, liquid] = shift_whole_rows(maps[:, v, liquid], int(dy))
        maps = maps.reshape(frames, vials, regions, p, p).reshape(per, p, p)
        out[a * per:(a + 1) * per] = maps[:, SSIM_CROP:p - SSIM_CROP, SSIM_CROP:p - SSIM_CROP]
    return out
