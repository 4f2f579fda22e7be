"""Helpers shared by the simulator tests: one product, noise-free renders, energies."""
from __future__ import annotations

from dataclasses import replace

import numpy as np

from vialguard.recipe import load_recipe
from vialguard.simulator.defects import DefectSpec
from vialguard.simulator.render import StripRenderer
from vialguard.simulator.handling import (
    MAX_ANGLE_DEG,
    MAX_SHIFT_PX,
    FrameState,
    RunConditions,
    draw_run,
    frame_state,
)
from vialguard.simulator.strip import ProductShape, draw_product

RECIPE = load_recipe()
RENDERER = StripRenderer(RECIPE)


def product(seed: int = 5) -> ProductShape:
    return draw_product(RECIPE, "P9999", np.random.default_rng(seed))


def run_of(shape: ProductShape, seed: int = 1) -> RunConditions:
    return draw_run(shape, np.random.default_rng(seed))


def extreme_pose(run: RunConditions, sign: float = 1.0) -> RunConditions:
    """The run moved to the largest shift and rotation the simulator ever draws."""
    return replace(run, dx=sign * MAX_SHIFT_PX, dy=sign * MAX_SHIFT_PX, angle_deg=sign * MAX_ANGLE_DEG)


def still_state(shape: ProductShape, run: RunConditions) -> FrameState:
    """Frame 0's liquid without anything floating in it."""
    state = frame_state(shape, run, 0, RECIPE.frames_per_acquisition)
    return FrameState(state.levels, ())


_CLEAN: dict[int, tuple[ProductShape, np.ndarray]] = {}


def clean_transmission(shape: ProductShape, state: FrameState) -> np.ndarray:
    key = id(shape)
    if key not in _CLEAN or _CLEAN[key][0] is not shape:
        _CLEAN[key] = (shape, RENDERER.transmission(RENDERER.product_layers(shape, []), state))
    return _CLEAN[key][1]


def defect_energy(shape: ProductShape, spec: DefectSpec, state: FrameState) -> float:
    """Sum of squared transmission change a defect causes (light units, noise-free, same frame state)."""
    clean = clean_transmission(shape, state)
    with_defect = RENDERER.transmission(RENDERER.product_layers(shape, [spec]), state)
    return float(np.sum((with_defect - clean) ** 2))
