"""What a simulated strip is made of: the product's shape, drawn once per product id.

Three time scales, three random draws, so that a Knapp kit behaves like a real
one: the *product* (vial outline, fill level, plastic opacity; here) is drawn
once per product id and never changes; the *run* and the *frames* (pose, light,
noise, bubbles, drops, slosh) are the handling, in :mod:`.handling`. Defects live
on the plastic, so they belong to the product and only move with the pose.

All vertical landmarks come from the recipe's region rectangles (flag in R0,
neck and shoulder in R1, meniscus in R2, bottom in R3): another recipe with other
rectangles gets a vial drawn into its own regions, never at fixed pixels.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from vialguard.recipe import Recipe

# Product-to-product spread of the body width (relative), i.e. about +-1.4 px of outline.
BODY_WIDTH_SPREAD = 0.015


@dataclass(frozen=True)
class VialLayout:
    """Landmark rows (frame coordinates) and column of one vial, from the recipe."""

    index: int
    cx: float
    x0: int
    width: int
    flag_top: float
    flag_bottom: float
    cap_top: float
    cap_bottom: float
    neck_top: float
    shoulder_top: float
    body_top: float
    bottom_start: float
    bottom_end: float
    body_half_width: float
    meniscus_lo: float
    meniscus_hi: float


def vial_layout(recipe: Recipe, vial: int) -> VialLayout:
    """Place the vial's parts inside its four region rectangles."""
    r0, r1, r2, r3 = (recipe.region_rect(vial, r) for r in range(4))
    x0 = min(r.x for r in (r0, r1, r2, r3))
    width = min(r.width for r in (r0, r1, r2, r3))
    return VialLayout(
        index=vial,
        cx=x0 + width / 2.0,
        x0=x0,
        width=width,
        flag_top=r0.y + 0.06 * r0.height,
        flag_bottom=r0.y + 0.60 * r0.height,
        cap_top=r0.y + 0.68 * r0.height,
        cap_bottom=r0.y + 0.95 * r0.height,
        neck_top=r1.y + 0.0 * r1.height,
        shoulder_top=r1.y + 0.32 * r1.height,
        body_top=r1.y + 0.72 * r1.height,
        bottom_start=r3.y + 0.66 * r3.height,
        bottom_end=r3.y + 0.90 * r3.height,
        body_half_width=0.36 * width,
        meniscus_lo=r2.y + 0.24 * r2.height,
        meniscus_hi=r2.y + 0.36 * r2.height,
    )


# Row kinds of a vial profile: how light crosses the plastic at that height.
ROW_NONE, ROW_PLATE, ROW_SOLID, ROW_TUBE = 0, 1, 2, 3


@dataclass
class VialProfile:
    """Per-row outline of one vial: half-widths left/right of the axis, wall, row kind.

    ``flash_left``/``flash_right`` are solid plastic bulging out of the outline (a bump
    on the neck or cap); zero on a good vial.
    """

    layout: VialLayout
    half_left: np.ndarray  # float32 [frame_height]
    half_right: np.ndarray  # float32 [frame_height]
    wall: np.ndarray  # float32 [frame_height], wall thickness in px
    kind: np.ndarray  # uint8 [frame_height], ROW_*
    fill_level: float  # resting meniscus row
    flash_left: np.ndarray  # float32 [frame_height]
    flash_right: np.ndarray  # float32 [frame_height]

    def copy(self) -> "VialProfile":
        return VialProfile(
            self.layout, self.half_left.copy(), self.half_right.copy(), self.wall.copy(), self.kind.copy(),
            self.fill_level, self.flash_left.copy(), self.flash_right.copy(),
        )

    def inner_radius(self, row: int) -> float:
        return float(min(self.half_left[row], self.half_right[row]) - self.wall[row])


@dataclass
class ProductShape:
    """Everything about one product that does not change between its runs."""

    product_id: str
    vials: list[VialProfile]
    plastic_clarity: float  # share of backlight a thin wall lets through
    wall_absorption: float  # per-pixel absorption of the plastic
    liquid_absorption: float
    emboss_seed: int


def _smoothstep(t: np.ndarray) -> np.ndarray:
    t = np.clip(t, 0.0, 1.0)
    return t * t * (3 - 2 * t)


def _vial_profile(recipe: Recipe, layout: VialLayout, rng: np.random.Generator) -> VialProfile:
    """Outline of one vial from flag to bottom, with small product-to-product variation."""
    h = recipe.frame_height
    y = np.arange(h, dtype=np.float32) + 0.5
    w = layout.width
    body = layout.body_half_width * rng.uniform(1 - BODY_WIDTH_SPREAD, 1 + BODY_WIDTH_SPREAD)
    half = np.zeros(h, np.float32)
    wall = np.zeros(h, np.float32)
    kind = np.zeros(h, np.uint8)

    flag = (y >= layout.flag_top) & (y < layout.flag_bottom)
    half[flag], wall[flag], kind[flag] = 0.30 * w, 0.0, ROW_PLATE
    stem = (y >= layout.flag_bottom) & (y < layout.cap_top)
    half[stem], kind[stem] = 0.05 * w, ROW_SOLID
    cap = (y >= layout.cap_top) & (y < layout.cap_bottom)
    t = (y[cap] - layout.cap_top) / (layout.cap_bottom - layout.cap_top)
    half[cap], kind[cap] = 0.14 * w * np.sqrt(np.clip(1 - (2 * t - 1) ** 2 * 0.75, 0, 1)), ROW_SOLID
    waist = (y >= layout.cap_bottom) & (y < layout.neck_top + 2)
    half[waist], kind[waist] = 0.055 * w, ROW_SOLID
    neck = (y >= layout.neck_top + 2) & (y < layout.shoulder_top)
    t = (y[neck] - layout.neck_top) / (layout.shoulder_top - layout.neck_top)
    half[neck], wall[neck], kind[neck] = 0.075 * w + 0.02 * w * t, 2.5, ROW_TUBE
    shoulder = (y >= layout.shoulder_top) & (y < layout.body_top)
    t = _smoothstep((y[shoulder] - layout.shoulder_top) / (layout.body_top - layout.shoulder_top))
    half[shoulder] = 0.095 * w + (body - 0.095 * w) * t
    wall[shoulder], kind[shoulder] = 2.5 + t, ROW_TUBE
    trunk = (y >= layout.body_top) & (y < layout.bottom_start)
    half[trunk], wall[trunk], kind[trunk] = body, 3.5, ROW_TUBE
    bottom = (y >= layout.bottom_start) & (y < layout.bottom_end)
    t = (y[bottom] - layout.bottom_start) / (layout.bottom_end - layout.bottom_start)
    half[bottom] = body * np.sqrt(np.clip(1 - t**2.2, 0, 1))
    wall[bottom], kind[bottom] = 3.5 + 4.0 * t, ROW_TUBE
    kind[half < 1.0] = ROW_NONE
    fill = rng.uniform(layout.meniscus_lo, layout.meniscus_hi)
    flash = np.zeros(h, np.float32)
    return VialProfile(layout, half.copy(), half.copy(), wall, kind, float(fill), flash, flash.copy())


def draw_product(recipe: Recipe, product_id: str, rng: np.random.Generator) -> ProductShape:
    """Draw one product: five vial outlines, fill levels and plastic properties."""
    vials = [_vial_profile(recipe, vial_layout(recipe, v), rng) for v in range(len(recipe.vials))]
    return ProductShape(
        product_id=product_id,
        vials=vials,
        plastic_clarity=float(rng.uniform(0.80, 0.88)),
        wall_absorption=float(rng.uniform(0.028, 0.036)),
        liquid_absorption=float(rng.uniform(0.0010, 0.0018)),
        emboss_seed=int(rng.integers(0, 2**31)),
    )
