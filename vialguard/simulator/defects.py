"""The defect library: what can be wrong with a strip, where, and how badly.

Each kind is a small function that returns its effect on the product, in product
(canonical) coordinates: either a window of light transmission (a particle, a
spot, a scratch, a burn, foam on the wall) or an edit of the vial outline (a dent,
a plastic bump on the neck or cap). Each effect carries its ground-truth mask.
Severity in [0, 1] grades size and contrast together; at ~0.1 a defect is a few
pixels with a contrast no larger than a bubble's, so light defects stay genuinely
hard, as the light ones of a real Knapp kit are.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np

from vialguard.errors import SimulatorError
from vialguard.recipe import Recipe
from vialguard.simulator.handling import max_pose_displacement
from vialguard.simulator.strip import ROW_NONE, ProductShape, VialProfile

# Kind -> regions it can plausibly appear in (R0 flag, R1 neck/shoulder, R2 liquid body, R3 bottom).
DEFECT_REGIONS: dict[str, tuple[int, ...]] = {
    "stuck_particle": (1, 2, 3),
    "black_spot": (1, 2, 3),
    "scratch": (0, 1, 2),
    "burn": (2, 3),
    "deformation": (1, 3),
    "foam": (2,),
    "neck_bump": (1,),
    "cap_bump": (0,),
}
DEFECT_KINDS: tuple[str, ...] = tuple(DEFECT_REGIONS)
_OUTLINE_KINDS = ("deformation", "neck_bump", "cap_bump")


@dataclass(frozen=True)
class DefectSpec:
    """One placed defect: kind, vial, region, severity and its centre in product coordinates."""

    kind: str
    vial: int
    region: int
    severity: float
    x: float
    y: float
    seed: int


@dataclass(frozen=True)
class DefectEffect:
    """What a defect does: a transmission window (multiplies the light) and its mask window."""

    y0: int
    x0: int
    transmission: np.ndarray | None  # float32 window, 1 = no effect
    mask: np.ndarray  # bool window


def _extent(kind: str, s: float) -> float:
    """Half-size in pixels of the defect's footprint (used to keep it inside its region)."""
    return {
        "stuck_particle": 1.2 + 4.8 * s + 2,
        "black_spot": 1.5 + 7.0 * s + 4,
        "scratch": (10 + 70 * s) / 2 + 2,
        "burn": 4 + 20 * s + 3,
        "deformation": (12 + 50 * s) / 2 + 4,
        "foam": (8 + 40 * s) / 2 + 6,
        "neck_bump": (4 + 12 * s) / 2 + 4,
        "cap_bump": (4 + 12 * s) / 2 + 4,
    }[kind]


def _grid(size: int, cx: float, cy: float) -> tuple[int, int, np.ndarray, np.ndarray]:
    x0, y0 = int(math.floor(cx)) - size, int(math.floor(cy)) - size
    yy, xx = np.mgrid[y0 : y0 + 2 * size + 1, x0 : x0 + 2 * size + 1].astype(np.float32) + 0.5
    return y0, x0, xx - cx, yy - cy


def _finish(y0: int, x0: int, dark: np.ndarray) -> DefectEffect:
    """Turn a darkening window into transmission and a mask of where it really shows."""
    peak = float(dark.max())
    mask = dark > max(0.15 * peak, 0.004)
    return DefectEffect(y0, x0, (1.0 - np.clip(dark, 0, 0.97)).astype(np.float32), mask)


def _stuck_particle(spec: DefectSpec, rng: np.random.Generator) -> DefectEffect:
    s = spec.severity
    r, c = 1.2 + 4.8 * s, 0.12 + 0.83 * s
    y0, x0, dx, dy = _grid(int(r) + 4, spec.x, spec.y)
    cover = np.zeros_like(dx)
    for _ in range(int(rng.integers(2, 5))):  # an irregular clump of a few grains
        ox, oy = rng.uniform(-0.5, 0.5, 2) * r
        lobe = r * rng.uniform(0.55, 0.9)
        cover = np.maximum(cover, np.clip(lobe + 0.5 - np.hypot(dx - ox, dy - oy), 0, 1))
    return _finish(y0, x0, c * cover)


def _black_spot(spec: DefectSpec, rng: np.random.Generator) -> DefectEffect:
    s = spec.severity
    r, c = 1.5 + 7.0 * s, 0.10 + 0.75 * s
    y0, x0, dx, dy = _grid(int(r) + 6, spec.x, spec.y)
    sigma = r / 1.6
    e = rng.uniform(0.8, 1.25)
    return _finish(y0, x0, c * np.exp(-0.5 * ((dx * e) ** 2 + (dy / e) ** 2) / sigma**2))


def _scratch(spec: DefectSpec, rng: np.random.Generator) -> DefectEffect:
    s = spec.severity
    length, width, c = 10 + 70 * s, 0.7 + 1.3 * s, 0.08 + 0.32 * s
    theta = rng.uniform(0, math.pi)
    ux, uy = math.cos(theta), math.sin(theta)
    y0, x0, dx, dy = _grid(int(length / 2) + 4, spec.x, spec.y)
    along = dx * ux + dy * uy
    across = -dx * uy + dy * ux + 0.8 * np.sin(along / rng.uniform(6, 14))  # a slightly wavy stroke
    cover = np.clip(width / 2 + 0.5 - np.abs(across), 0, 1) * (np.abs(along) <= length / 2)
    strength = 0.65 + 0.35 * np.cos(along / rng.uniform(3, 7))  # uneven depth along the stroke
    return _finish(y0, x0, c * cover * strength)


def _burn(spec: DefectSpec, rng: np.random.Generator) -> DefectEffect:
    s = spec.severity
    r, c = 4 + 20 * s, 0.05 + 0.45 * s
    size = int(r) + 3
    y0, x0, dx, dy = _grid(size, spec.x, spec.y)
    texture = cv2.GaussianBlur(rng.standard_normal(dx.shape).astype(np.float32), (0, 0), max(r / 4, 1.0))
    texture = (texture - texture.min()) / (np.ptp(texture) + 1e-6)
    envelope = np.exp(-2.0 * (dx**2 + dy**2) / r**2)
    return _finish(y0, x0, c * envelope * (0.55 + 0.45 * texture) / 1.0)


def _foam(spec: DefectSpec, rng: np.random.Generator) -> DefectEffect:
    s = spec.severity
    spread, n, c = 8 + 40 * s, 3 + int(20 * s), 0.08 + 0.30 * s
    y0, x0, dx, dy = _grid(int(spread / 2) + 6, spec.x, spec.y)
    dark = np.zeros_like(dx)
    for _ in range(n):  # small bubbles stuck to the wall at the liquid surface
        bx, by = rng.uniform(-spread / 2, spread / 2), rng.uniform(-2.5, 2.5)
        br = rng.uniform(1.0, 1.5 + 2.5 * s)
        ring = np.exp(-(((np.hypot(dx - bx, dy - by) - 0.8 * br) / (0.35 * br + 0.6)) ** 2))
        dark = np.maximum(dark, c * ring)
    return _finish(y0, x0, dark)


_SURFACE = {
    "stuck_particle": _stuck_particle,
    "black_spot": _black_spot,
    "scratch": _scratch,
    "burn": _burn,
    "foam": _foam,
}


def _outline_delta(spec: DefectSpec, n_rows: int) -> tuple[int, np.ndarray]:
    """(side, per-row change of the outline) of an outline defect: a dent (< 0) or a bump (> 0)."""
    s = spec.severity
    y = np.arange(n_rows, dtype=np.float32) + 0.5
    side = 1 if spec.seed % 2 else -1
    if spec.kind == "deformation":
        amp, span = 0.4 + 8.6 * s, 12 + 50 * s
        return side, -amp * np.exp(-(((y - spec.y) / (span / 2.5)) ** 2))  # the wall moves in
    amp, span = 0.5 + 6.5 * s, 4 + 12 * s
    return side, amp * np.exp(-(((y - spec.y) / (span / 2)) ** 4))  # solid plastic flash on the outline


def edit_outline(profile: VialProfile, spec: DefectSpec) -> tuple[VialProfile, DefectEffect]:
    """Apply an outline defect to a copy of the vial profile; mask = the band the outline swept."""
    side, delta = _outline_delta(spec, len(profile.half_left))
    edited = profile.copy()
    on_vial = profile.kind != ROW_NONE
    if spec.kind == "deformation":
        (edited.half_right if side > 0 else edited.half_left)[:] += delta * on_vial
    else:
        (edited.flash_right if side > 0 else edited.flash_left)[:] += np.maximum(delta, 0) * on_vial

    def outline(p: VialProfile) -> np.ndarray:
        return p.half_right + p.flash_right if side > 0 else p.half_left + p.flash_left

    before, after = outline(profile), outline(edited)
    rows = np.nonzero(np.abs(after - before) > 0.25)[0]
    if rows.size == 0:
        rows = np.array([int(spec.y)])
    rim = 4
    lo_h = int(math.floor(min(before[rows].min(), after[rows].min()))) - rim
    hi_h = int(math.ceil(max(before[rows].max(), after[rows].max()))) + rim
    y0, y1 = int(rows.min()) - 1, int(rows.max()) + 2
    cx = profile.layout.cx
    xa, xb = (int(cx) + lo_h, int(cx) + hi_h + 1) if side > 0 else (int(cx) - hi_h - 1, int(cx) - lo_h)
    mask = np.zeros((y1 - y0, xb - xa), bool)
    xs = np.arange(xa, xb) + 0.5 - cx
    for i, row in enumerate(range(y0, y1)):
        a, b = sorted((float(before[row]), float(after[row])))
        if b - a > 0.25:
            mask[i] = (np.abs(xs) >= a - rim) & (np.abs(xs) <= b + rim) & (np.sign(xs) == side)
    return edited, DefectEffect(y0, xa, None, mask)


def surface_effect(spec: DefectSpec) -> DefectEffect:
    """The transmission window and mask of a defect on the plastic surface."""
    return _SURFACE[spec.kind](spec, np.random.default_rng(spec.seed))


def is_outline_kind(kind: str) -> bool:
    return kind in _OUTLINE_KINDS


def _allowed_half(profile: VialProfile, kind: str, ext: float) -> np.ndarray:
    """Per row, how far from the axis the defect's centre may go and stay on the plastic."""
    half = np.where(profile.kind != ROW_NONE, np.minimum(profile.half_left, profile.half_right), -1e3)
    reach = int(math.ceil(ext))
    padded = np.pad(half, reach, constant_values=-1e3)
    # the narrowest row the footprint can touch decides, so a long scratch cannot leave the flag
    narrowest = np.lib.stride_tricks.sliding_window_view(padded, 2 * reach + 1).min(axis=1)
    return narrowest - 4 - ext


def place_defect(
    kind: str, vial: int, region: int, severity: float, product: ProductShape, recipe: Recipe,
    rng: np.random.Generator,
) -> DefectSpec:
    """Pick a centre for the defect inside (vial, region), on the plastic, away from the region's edges.

    The margin covers the largest pose change of a run, so the mask stays inside
    the region's rectangle in every run of the product.
    """
    if kind not in DEFECT_REGIONS:
        raise SimulatorError(f"unknown defect kind '{kind}'; known kinds: {', '.join(DEFECT_KINDS)}")
    if region not in DEFECT_REGIONS[kind]:
        raise SimulatorError(f"a {kind} cannot be placed in region R{region}; it belongs in "
                             + ", ".join(f"R{r}" for r in DEFECT_REGIONS[kind]))
    if not 0 <= vial < len(recipe.vials):
        raise SimulatorError(f"vial {vial} does not exist; recipe '{recipe.id}' has {len(recipe.vials)} vials")
    if not 0.0 <= severity <= 1.0:
        raise SimulatorError(f"severity must be in [0, 1], got {severity}")
    profile, lay = product.vials[vial], product.vials[vial].layout
    rect = recipe.region_rect(vial, region)
    ext = _extent(kind, severity)
    margin = max_pose_displacement(recipe) + ext
    rows = np.arange(len(profile.half_left))
    ok = (rows >= rect.y + margin) & (rows < rect.y + rect.height - margin)
    half = np.minimum(profile.half_left, profile.half_right)
    if kind == "foam":
        ok &= np.abs(rows - (profile.fill_level + 4)) <= 3
    elif kind == "deformation":
        ok &= (rows >= lay.shoulder_top + 0.5 * (lay.body_top - lay.shoulder_top)) & (rows < lay.bottom_start)
    elif kind == "neck_bump":
        ok &= (rows >= lay.neck_top + 4) & (rows < lay.shoulder_top)
    elif kind == "cap_bump":
        ok &= (rows >= lay.cap_top) & (rows < lay.cap_bottom)
    if is_outline_kind(kind):
        # the band the outline sweeps (plus its dark rim) must fit in the rectangle too
        outward = 0.0 if kind == "deformation" else 0.5 + 6.5 * severity
        room = min(lay.cx - rect.x, rect.x + rect.width - lay.cx) - max_pose_displacement(recipe)
        ok &= (profile.kind != ROW_NONE) & (half + outward + 6 < room)
        allowed = np.zeros(len(rows))
    else:
        allowed = _allowed_half(profile, kind, ext)
        ok &= allowed > 0
    candidates = np.nonzero(ok)[0]
    if candidates.size == 0:
        raise SimulatorError(f"no room for a {kind} (severity {severity:.2f}) in vial {vial} region R{region} "
                             f"of recipe '{recipe.id}'")
    row = int(rng.choice(candidates))
    a = float(allowed[row])
    lo = max(lay.cx - a, rect.x + margin)
    hi = min(lay.cx + a, rect.x + rect.width - margin)
    x = float(rng.uniform(lo, hi)) if hi > lo else lay.cx
    if is_outline_kind(kind):
        x = lay.cx
    return DefectSpec(kind, vial, region, float(severity), x, row + 0.5, int(rng.integers(0, 2**31)))
