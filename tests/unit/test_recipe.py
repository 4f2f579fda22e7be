"""The recipe is validated on load and names the bad field."""
from __future__ import annotations

import copy

import pytest
import yaml

from vialguard.errors import RecipeError
from vialguard.recipe import REGION_IDS, load_recipe, parse_recipe


@pytest.fixture()
def raw() -> dict:
    from importlib import resources

    return yaml.safe_load((resources.files("vialguard") / "recipes" / "bfs5-10ml.yaml").read_text())


def test_shipped_recipe_describes_60_patches_per_acquisition() -> None:
    recipe = load_recipe()
    assert recipe.patches_per_frame == 20
    assert recipe.patches_per_acquisition == 60
    assert recipe.inspected_frames == (0, 7, 15)
    assert [r.id for r in recipe.regions] == list(REGION_IDS)


def test_region_rectangles_stay_inside_the_frame() -> None:
    recipe = load_recipe()
    for v in range(len(recipe.vials)):
        for r in range(4):
            rect = recipe.region_rect(v, r)
            assert rect.x + rect.width <= recipe.frame_width
            assert rect.y + rect.height <= recipe.frame_height


@pytest.mark.parametrize(
    ("path", "value", "field"),
    [
        (("frame", "width"), -5, "frame.width"),
        (("frame", "bit_depth"), 12, "frame.bit_depth"),
        (("inspected_frames",), [0, 7, 16], "inspected_frames[2]"),
        (("inspected_frames",), [0, 0, 15], "inspected_frames"),
        (("patch_size",), 250, "patch_size"),
        (("patch_size",), "256", "patch_size"),
    ],
)
def test_bad_field_is_named_in_the_error(raw: dict, path: tuple, value: object, field: str) -> None:
    data = copy.deepcopy(raw)
    target = data
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value
    with pytest.raises(RecipeError) as err:
        parse_recipe(data)
    assert err.value.field == field


def test_missing_field_is_named(raw: dict) -> None:
    del raw["frames_per_acquisition"]
    with pytest.raises(RecipeError, match="frames_per_acquisition"):
        parse_recipe(raw)


def test_regions_must_be_R0_to_R3_in_order(raw: dict) -> None:
    raw["regions"][0], raw["regions"][1] = raw["regions"][1], raw["regions"][0]
    with pytest.raises(RecipeError, match="regions"):
        parse_recipe(raw)


def test_region_outside_the_frame_is_refused(raw: dict) -> None:
    raw["vials"][4]["x"] = 1100
    with pytest.raises(RecipeError, match="outside"):
        parse_recipe(raw)


def test_digest_changes_with_geometry(raw: dict) -> None:
    a = parse_recipe(raw)
    raw["vials"][0]["x"] = 1
    b = parse_recipe(raw)
    assert a.digest() != b.digest()
    assert b.digest() == parse_recipe(copy.deepcopy(raw)).digest()


def test_unknown_recipe_id_is_a_clear_error() -> None:
    with pytest.raises(RecipeError, match="no shipped recipe"):
        load_recipe("no-such-recipe")
