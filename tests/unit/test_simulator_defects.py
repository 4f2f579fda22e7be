"""The defect library: each kind lands where it is declared, on the plastic, graded by severity."""
from __future__ import annotations

import numpy as np
import pytest

from vialguard.errors import SimulatorError
from vialguard.simulator.defects import (
    DEFECT_KINDS,
    DEFECT_REGIONS,
    edit_outline,
    is_outline_kind,
    place_defect,
)
from vialguard.simulator.handling import BUBBLE_CONTRAST, BUBBLE_RADIUS_PX, Blob, FrameState
from vialguard.simulator.strip import BODY_WIDTH_SPREAD

from tests.unit.simulator_support import (
    RECIPE,
    RENDERER,
    clean_transmission,
    defect_energy,
    extreme_pose,
    product,
    run_of,
    still_state,
)

SHAPE = product()
RUN = run_of(SHAPE)
STATE = still_state(SHAPE, RUN)
CASES = [(kind, region) for kind, regions in DEFECT_REGIONS.items() for region in regions]


@pytest.mark.parametrize("kind,region", CASES)
def test_defect_mask_stays_inside_its_vial_and_region_at_the_extreme_poses(kind: str, region: int) -> None:
    for vial in (0, len(RECIPE.vials) - 1):  # the end vials move most when the strip rotates
        spec = place_defect(kind, vial, region, 1.0, SHAPE, RECIPE, np.random.default_rng(vial))
        layers = RENDERER.product_layers(SHAPE, [spec])
        rect = RECIPE.region_rect(vial, region)
        for sign in (-1.0, 1.0):
            (mask,) = RENDERER.masks_in_camera(layers, extreme_pose(RUN, sign))
            ys, xs = np.nonzero(mask)
            assert ys.size > 0, f"{kind} left no mask"
            assert rect.x <= xs.min() and xs.max() < rect.x + rect.width, (kind, vial, region, sign)
            assert rect.y <= ys.min() and ys.max() < rect.y + rect.height, (kind, vial, region, sign)


@pytest.mark.parametrize("kind", [k for k in DEFECT_KINDS if not is_outline_kind(k)])
def test_surface_defects_sit_on_the_plastic_not_on_the_background(kind: str) -> None:
    region = DEFECT_REGIONS[kind][0]
    spec = place_defect(kind, 2, region, 1.0, SHAPE, RECIPE, np.random.default_rng(3))
    layers = RENDERER.product_layers(SHAPE, [spec])
    background = RENDERER.product_layers(SHAPE, []).empty >= 0.999
    assert not np.any(layers.masks[0] & background)


@pytest.mark.parametrize("kind", DEFECT_KINDS)
def test_higher_severity_changes_the_image_more(kind: str) -> None:
    region = DEFECT_REGIONS[kind][-1]
    energies = [
        defect_energy(SHAPE, place_defect(kind, 1, region, s, SHAPE, RECIPE, np.random.default_rng(7)), STATE)
        for s in (0.05, 0.3, 0.8)
    ]
    assert 0 < energies[0] < energies[1] < energies[2], energies


@pytest.mark.parametrize("kind", [k for k in DEFECT_KINDS if not is_outline_kind(k)])
def test_light_surface_defects_are_no_stronger_than_the_faintest_bubble(kind: str) -> None:
    vial = 1
    lay = SHAPE.vials[vial].layout
    level = STATE.levels[vial][0]
    bubble = Blob(vial, lay.cx, level + 25, BUBBLE_RADIUS_PX[0], BUBBLE_RADIUS_PX[0], BUBBLE_CONTRAST[0])
    clean = clean_transmission(SHAPE, STATE)
    with_bubble = RENDERER.transmission(RENDERER.product_layers(SHAPE, []), FrameState(STATE.levels, (bubble,)))
    bubble_energy = float(np.sum((with_bubble - clean) ** 2))
    for seed in range(3):
        spec = place_defect(kind, vial, DEFECT_REGIONS[kind][-1], 0.1, SHAPE, RECIPE, np.random.default_rng(seed))
        layers = RENDERER.product_layers(SHAPE, [spec])
        change = np.abs(RENDERER.transmission(layers, STATE) - clean)
        assert float(np.sum(change**2)) <= bubble_energy
        assert change.max() <= BUBBLE_CONTRAST[0]
        assert layers.masks[0].sum() < 150  # a few pixels, not a blotch


@pytest.mark.parametrize("kind", [k for k in DEFECT_KINDS if is_outline_kind(k)])
def test_light_outline_defects_move_the_outline_less_than_product_spread(kind: str) -> None:
    region = DEFECT_REGIONS[kind][0]
    spec = place_defect(kind, 2, region, 0.1, SHAPE, RECIPE, np.random.default_rng(0))
    profile = SHAPE.vials[2]
    edited, _ = edit_outline(profile, spec)
    moved = max(
        np.abs(edited.half_left + edited.flash_left - profile.half_left - profile.flash_left).max(),
        np.abs(edited.half_right + edited.flash_right - profile.half_right - profile.flash_right).max(),
    )
    assert 0 < moved <= BODY_WIDTH_SPREAD * profile.layout.body_half_width


def test_unknown_kind_or_implausible_region_is_refused_with_the_allowed_regions() -> None:
    rng = np.random.default_rng(0)
    with pytest.raises(SimulatorError, match="unknown defect kind"):
        place_defect("crack", 0, 1, 0.5, SHAPE, RECIPE, rng)
    with pytest.raises(SimulatorError, match="R2, R3"):
        place_defect("burn", 0, 0, 0.5, SHAPE, RECIPE, rng)
    with pytest.raises(SimulatorError, match="severity"):
        place_defect("burn", 0, 2, 1.5, SHAPE, RECIPE, rng)
