"""trainer.visibility: a defect's d' against the sensor noise, from noise-free renderings with and without it."""
from __future__ import annotations

import numpy as np
import pytest

from trainer.visibility import SEARCH_D_PRIME, DefectVisibility, acquisition_visibility, kit_visibility, summary_lines
from vialguard.recipe import load_recipe
from vialguard.simulator.defects import place_defect
from vialguard.simulator.handling import draw_run
from vialguard.simulator.render import StripRenderer
from vialguard.simulator.strip import draw_product


@pytest.fixture(scope="module")
def scene():  # type: ignore[no-untyped-def]  # noqa: ANN201
    recipe = load_recipe()
    renderer = StripRenderer(recipe)
    product = draw_product(recipe, "P0000", np.random.default_rng(3))
    run = draw_run(product, np.random.default_rng(4))
    return recipe, renderer, product, run


def _visibility(scene, kind: str, region: int, severity: float):  # type: ignore[no-untyped-def]  # noqa: ANN001, ANN202
    recipe, renderer, product, run = scene
    spec = place_defect(kind, 2, region, severity, product, recipe, np.random.default_rng(5))
    return acquisition_visibility(renderer, recipe, product, renderer.product_layers(product, [spec]),
                                  renderer.product_layers(product, []), run, 2 * len(recipe.regions) + region)


def test_no_defect_holds_no_signal(scene) -> None:  # type: ignore[no-untyped-def]  # noqa: ANN001
    recipe, renderer, product, run = scene
    clean = renderer.product_layers(product, [])
    assert acquisition_visibility(renderer, recipe, product, clean, clean, run, 0) == (0.0, 0.0, 0.0)


@pytest.mark.parametrize("kind, region", [("black_spot", 3), ("scratch", 1), ("neck_bump", 1)])
def test_a_heavier_defect_is_more_visible_and_lies_in_its_own_patch(scene, kind: str, region: int) -> None:  # type: ignore[no-untyped-def]  # noqa: ANN001, E501
    light_peak, light, light_own = _visibility(scene, kind, region, 0.1)
    heavy_peak, heavy, heavy_own = _visibility(scene, kind, region, 0.9)
    assert 0 < light < heavy
    assert 0 < light_peak < heavy_peak
    assert heavy_own == pytest.approx(heavy, rel=0.05)     # the signal is in the defect's own patch


def test_a_kit_is_measured_defect_by_defect_as_simulate_draws_it() -> None:
    defects = kit_visibility(load_recipe(), good=1, defective=2, runs=1, seed=7)
    assert len(defects) >= 2
    assert all(d.d_prime > 0 and d.d_prime_min <= d.d_prime and 0.05 <= d.severity <= 1.0 for d in defects)


def test_the_summary_sits_each_band_beside_the_versions_detection() -> None:
    defects = [DefectVisibility("P0001", "scratch", 0.12, 0, 1, 1.5, 3.0, 2.0, 3.0),
               DefectVisibility("P0002", "scratch", 0.15, 1, 1, 2.5, 5.0, 4.0, 5.0),
               DefectVisibility("P0003", "burn", 0.8, 2, 3, 40.0, 300.0, 250.0, 300.0)]
    report = {"qualification": {"detection_by_kind_and_severity": [
        {"kind": "scratch", "severity": "< 0.2", "acquisitions": {"detected": 6, "n": 20, "rate": 0.3},
         "products": {"detected": 0, "n": 2, "rate": 0.0}}]}}
    lines = summary_lines(defects, report)
    scratch = next(line for line in lines if line.startswith("scratch") and "< 0.2" in line)
    assert scratch.split()[3:6] == ["2", "4.0", "3.0"]              # 2 defects, median and min d'
    assert "6/20 (30 %), 0/2 products" in scratch
    burn = next(line for line in lines if line.startswith("burn"))
    assert "products" not in burn                                  # nothing in the report for it
    assert str(SEARCH_D_PRIME) in "\n".join(lines)
