"""The vial is drawn into the recipe's regions, whatever the recipe: never at fixed pixels."""
from __future__ import annotations

import numpy as np
import pytest

from vialguard.recipe import Recipe, load_recipe, parse_recipe
from vialguard.simulator.defects import DEFECT_REGIONS
from vialguard.simulator.kit import make_kit
from vialguard.simulator.render import StripRenderer
from vialguard.simulator.handling import draw_run, frame_state
from vialguard.simulator.strip import draw_product, vial_layout


def _other_recipe() -> Recipe:
    """Three narrower vials with a margin, regions of unequal heights, a smaller frame."""
    return parse_recipe({
        "id": "test-3vial", "frame": {"width": 720, "height": 900, "bit_depth": 8},
        "frames_per_acquisition": 16, "inspected_frames": [0, 7, 15], "patch_size": 128,
        "vials": [{"x": 20, "y": 30}, {"x": 260, "y": 30}, {"x": 500, "y": 30}],
        "regions": [
            {"id": "R0", "x": 0, "y": 0, "width": 200, "height": 180},
            {"id": "R1", "x": 0, "y": 180, "width": 200, "height": 200},
            {"id": "R2", "x": 0, "y": 380, "width": 200, "height": 240},
            {"id": "R3", "x": 0, "y": 620, "width": 200, "height": 220},
        ],
    })


@pytest.mark.parametrize("recipe", [load_recipe(), _other_recipe()], ids=["bfs5-10ml", "3-vial"])
def test_flag_neck_meniscus_and_bottom_fall_in_R0_R1_R2_R3(recipe: Recipe) -> None:
    shape = draw_product(recipe, "P0", np.random.default_rng(0))
    run = draw_run(shape, np.random.default_rng(0))
    for v in range(len(recipe.vials)):
        lay = vial_layout(recipe, v)
        r0, r1, r2, r3 = (recipe.region_rect(v, r) for r in range(4))
        assert r0.y <= lay.flag_top < lay.flag_bottom <= r0.y + r0.height
        assert r1.y <= lay.neck_top < lay.shoulder_top < lay.body_top <= r1.y + r1.height
        assert r3.y <= lay.bottom_start < lay.bottom_end <= r3.y + r3.height
        assert r0.x <= lay.cx - lay.body_half_width and lay.cx + lay.body_half_width <= r0.x + r0.width
        for f in range(recipe.frames_per_acquisition):
            level, tilt = frame_state(shape, run, f, recipe.frames_per_acquisition).levels[v]
            for edge in (-lay.body_half_width, lay.body_half_width):
                assert r2.y + 10 < level + tilt * edge < r2.y + r2.height - 10


def test_the_strip_is_only_inside_the_vial_columns_of_another_recipe() -> None:
    recipe = _other_recipe()
    renderer = StripRenderer(recipe)
    shape = draw_product(recipe, "P0", np.random.default_rng(0))
    layers = renderer.product_layers(shape, [])
    columns = np.zeros(recipe.frame_width, bool)
    for v in range(len(recipe.vials)):
        rect = recipe.region_rect(v, 0)
        columns[rect.x : rect.x + rect.width] = True
    plastic = (layers.empty < 0.999).any(axis=0)
    assert plastic.any() and not np.any(plastic & ~columns)
    rows = (layers.empty < 0.999).any(axis=1)
    top, bottom = recipe.region_rect(0, 0).y, recipe.region_rect(0, 3).y + recipe.region_rect(0, 3).height
    assert not rows[:top].any() and not rows[bottom:].any()


def test_a_kit_on_another_recipe_keeps_each_defect_in_its_region() -> None:
    recipe = _other_recipe()
    for acq in make_kit(0, 2, runs=1, seed=9, recipe=recipe):
        assert acq.frames.shape == (16, recipe.frame_height, recipe.frame_width)
        for d, mask in zip(acq.fields.defects, acq.masks):
            assert d.region in DEFECT_REGIONS[d.kind]
            rect = recipe.region_rect(d.vial, d.region)
            ys, xs = np.nonzero(mask)
            assert rect.x <= xs.min() and xs.max() < rect.x + rect.width
            assert rect.y <= ys.min() and ys.max() < rect.y + rect.height
