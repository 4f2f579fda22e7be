"""Handling: what changes between runs and between frames of one product.

A *run* is one acquisition: the grippers hold the strip with a slightly different
pose, the light and sensor noise drift, and filling/handling left a different set
of bubbles under the meniscus and drops in the neck. The *frames* of a run follow
the machine's rotation: the meniscus rises, falls and tilts, bubbles drift along
it and drops slide down, while the product itself (and its defects) stays put.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from vialguard.recipe import Recipe
from vialguard.simulator.strip import ProductShape

# Largest pose change of a run: shift in pixels and rotation in degrees.
MAX_SHIFT_PX = 4.0
MAX_ANGLE_DEG = 0.7
# Bubbles under the meniscus: radius (px) and ring contrast (share of light lost at the ring).
BUBBLE_RADIUS_PX = (2.0, 6.0)
BUBBLE_CONTRAST = (0.22, 0.45)


@dataclass(frozen=True)
class Blob:
    """A moving bubble or drop in one frame: a dark ring around a clear centre."""

    vial: int
    x: float
    y: float
    rx: float
    ry: float
    contrast: float


@dataclass(frozen=True)
class _Mover:
    vial: int
    x0: float
    y0: float  # for bubbles: depth below the meniscus; for drops: start row
    r: float
    contrast: float
    vx: float
    vy: float
    is_drop: bool


@dataclass
class RunConditions:
    """One acquisition's pose, light, noise and handling (bubbles, drops, slosh)."""

    gain: float
    offset: float
    grad_x: float
    grad_y: float
    dx: float
    dy: float
    angle_deg: float
    read_noise: float  # grey levels
    shot_gain: float  # variance per grey level
    slosh_amp: float
    slosh_phase: float
    tilt_amp: float
    movers: list[_Mover] = field(default_factory=list)
    noise_seed: int = 0


def draw_run(product: ProductShape, rng: np.random.Generator) -> RunConditions:
    """Draw the conditions of one acquisition of ``product``."""
    movers: list[_Mover] = []
    for v, prof in enumerate(product.vials):
        lay = prof.layout
        inner = lay.body_half_width - 6
        for _ in range(int(rng.integers(0, 7))):
            speed = rng.uniform(6.0, 14.0) * rng.choice([-1.0, 1.0])
            movers.append(_Mover(v, lay.cx + rng.uniform(-inner, inner), rng.uniform(10, 45),
                                 rng.uniform(*BUBBLE_RADIUS_PX), rng.uniform(*BUBBLE_CONTRAST), speed, 0.0, False))
        for _ in range(int(rng.integers(0, 4))):
            y0 = rng.uniform(lay.neck_top + 8, lay.body_top + 20)
            movers.append(_Mover(v, lay.cx + rng.uniform(-6, 6), y0, rng.uniform(2.0, 4.5),
                                 rng.uniform(0.25, 0.5), rng.uniform(-2.5, 2.5), rng.uniform(3.0, 7.0), True))
    return RunConditions(
        gain=float(rng.uniform(0.80, 0.90)),
        offset=float(rng.uniform(-0.01, 0.01)),
        grad_x=float(rng.uniform(-0.04, 0.04)),
        grad_y=float(rng.uniform(-0.04, 0.04)),
        dx=float(rng.uniform(-MAX_SHIFT_PX, MAX_SHIFT_PX)),
        dy=float(rng.uniform(-MAX_SHIFT_PX, MAX_SHIFT_PX)),
        angle_deg=float(rng.uniform(-MAX_ANGLE_DEG, MAX_ANGLE_DEG)),
        read_noise=float(rng.uniform(1.2, 2.0)),
        shot_gain=float(rng.uniform(0.01, 0.03)),
        slosh_amp=float(rng.uniform(3.0, 9.0)),
        slosh_phase=float(rng.uniform(0, 2 * math.pi)),
        tilt_amp=float(rng.uniform(0.01, 0.05)),
        movers=movers,
        noise_seed=int(rng.integers(0, 2**31)),
    )


@dataclass(frozen=True)
class FrameState:
    """Liquid and moving objects of one frame: meniscus (row, tilt) per vial and blobs."""

    levels: tuple[tuple[float, float], ...]
    blobs: tuple[Blob, ...]


def _reflect(x: float, lo: float, hi: float) -> float:
    """Bounce a position between two walls (a bubble meets the vial wall and comes back)."""
    span = hi - lo
    u = (x - lo) % (2 * span)
    return lo + (u if u <= span else 2 * span - u)


def frame_state(product: ProductShape, run: RunConditions, frame: int, n_frames: int) -> FrameState:
    """Where the liquid and the bubbles and drops are in frame ``frame`` of the run."""
    phase = 2 * math.pi * frame / n_frames + run.slosh_phase
    levels = tuple(
        (prof.fill_level + run.slosh_amp * math.sin(phase + 0.4 * v), run.tilt_amp * math.cos(phase + 0.4 * v))
        for v, prof in enumerate(product.vials)
    )
    blobs = []
    for m in run.movers:
        prof = product.vials[m.vial]
        lay = prof.layout
        level, tilt = levels[m.vial]
        if m.is_drop:
            y = m.y0 + m.vy * frame
            row = int(min(max(y, 0), len(prof.half_left) - 1))
            inner = max(prof.inner_radius(row) - m.r - 1, 0.0)
            x = _reflect(m.x0 + m.vx * frame, lay.cx - inner, lay.cx + inner) if inner > 0 else lay.cx
            if y + m.r >= level + tilt * (x - lay.cx) - 12 or inner <= 0:
                continue  # the drop has rejoined the liquid
            blobs.append(Blob(m.vial, x, y, m.r * 0.85, m.r * 1.15, m.contrast))
        else:
            inner = lay.body_half_width - 3.5 - m.r - 3
            x = _reflect(m.x0 + m.vx * frame, lay.cx - inner, lay.cx + inner)
            y = level + tilt * (x - lay.cx) + m.y0
            blobs.append(Blob(m.vial, x, y, m.r, m.r, m.contrast))
    return FrameState(levels=levels, blobs=tuple(blobs))


def pose_matrix(recipe: Recipe, run: RunConditions) -> np.ndarray:
    """2x3 affine from product (canonical) to camera coordinates: rotation about the strip centre + shift."""
    cx, cy = recipe.frame_width / 2.0, recipe.frame_height / 2.0
    a = math.radians(run.angle_deg)
    c, s = math.cos(a), math.sin(a)
    return np.array(
        [[c, -s, cx - c * cx + s * cy + run.dx], [s, c, cy - s * cx - c * cy + run.dy]], dtype=np.float64
    )


def max_pose_displacement(recipe: Recipe) -> float:
    """Upper bound of how far any pixel moves with the pose of a run."""
    radius = math.hypot(recipe.frame_width / 2.0, recipe.frame_height / 2.0)
    return math.hypot(MAX_SHIFT_PX, MAX_SHIFT_PX) + radius * math.radians(MAX_ANGLE_DEG) + 1.0
