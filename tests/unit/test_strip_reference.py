"""The strip reference: a vial judged against the other vials of its strip (numpy reference and TF twin)."""
from __future__ import annotations

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from dataclasses import replace

import cv2
import numpy as np
import pytest

from vialguard.errors import CalibrationError
from vialguard.local_score import MAP_STRIP, LocalScoreModel, PatchLayout
from vialguard.recipe import Rect, load_recipe
from vialguard.strip_reference import (SSIM_CROP, StripReferenceParams, blur, check_recipe, strip_maps,
                                       vial_step)

FRAMES, VIALS, REGIONS, P = 3, 5, 2, 64  # small strips: 2 regions of 64 px per vial
H = REGIONS * P
PARAMS = StripReferenceParams(liquid_region=-1, native_side=P)  # these synthetic strips hold no liquid
STEP = 1.5  # px of vertical shift between neighbouring vials (the strip's rotation)


def _strip(rng: np.random.Generator, defect: tuple[int, int, int] | None = None, shared: bool = False) -> np.ndarray:
    """[F*V*R, P, P] patches of identical vials shifted by STEP per vial, with sensor noise.

    ``defect`` (vial, row, col) darkens a 4 px spot on one vial in every frame; ``shared``
    puts a dark bar on every vial (relief the product has, not a defect).
    """
    base = cv2.resize(rng.random((H // 8, P // 8)).astype(np.float32), (P, H), interpolation=cv2.INTER_CUBIC)
    base = np.clip(0.3 + 0.4 * base, 0, 1)
    if shared:
        base[40:44, 10:50] *= 0.4
    frames = np.empty((FRAMES, VIALS, H, P), np.float32)
    for f in range(FRAMES):
        for v in range(VIALS):
            shift = np.array([[1, 0, 0], [0, 1, STEP * v]], np.float32)
            img = cv2.warpAffine(base, shift, (P, H), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
            if defect is not None and v == defect[0]:
                img[defect[1]:defect[1] + 4, defect[2]:defect[2] + 4] *= 0.5
            frames[f, v] = img + rng.normal(0, 0.004, img.shape).astype(np.float32)
    return np.clip(frames, 0, 1).reshape(FRAMES, VIALS, REGIONS, P, P).reshape(-1, P, P)


def _by_position(maps: np.ndarray) -> np.ndarray:
    return maps.reshape(FRAMES, VIALS, REGIONS, *maps.shape[1:])


def test_a_defect_on_one_vial_stands_out_where_it_is() -> None:
    maps = _by_position(strip_maps(_strip(np.random.default_rng(0), defect=(3, 80, 30)), FRAMES, VIALS, REGIONS, PARAMS))
    assert maps.shape == (FRAMES, VIALS, REGIONS, P - 2 * SSIM_CROP, P - 2 * SSIM_CROP)
    peak = maps.max(axis=(-2, -1))  # [F, V, R]
    for f in range(FRAMES):
        assert np.unravel_index(peak[f].argmax(), peak[f].shape) == (3, 1)  # vial 3, region 1 (row 80 = 64 + 16)
        y, x = np.unravel_index(maps[f, 3, 1].argmax(), maps[f, 3, 1].shape)
        assert abs(y + SSIM_CROP - 18) <= 3 and abs(x + SSIM_CROP - 32) <= 3
    others = np.delete(peak, 3, axis=1)
    assert peak[:, 3, 1].min() > 5 * others.max()


def test_what_every_vial_has_is_not_an_anomaly() -> None:
    rng = np.random.default_rng(1)
    plain = strip_maps(_strip(rng), FRAMES, VIALS, REGIONS, PARAMS)
    relief = strip_maps(_strip(np.random.default_rng(1), shared=True), FRAMES, VIALS, REGIONS, PARAMS)
    spot = strip_maps(_strip(np.random.default_rng(1), defect=(1, 40, 20)), FRAMES, VIALS, REGIONS, PARAMS)
    assert relief.max() < 2 * plain.max() + 0.01
    assert spot.max() > 4 * relief.max()


def test_the_strip_rotation_is_found() -> None:
    x = _strip(np.random.default_rng(2)).reshape(FRAMES, VIALS, H, P)
    assert vial_step(blur(x, 1.0), StripReferenceParams(native_side=P)) == pytest.approx(STEP, abs=0.25)


def test_whole_acquisitions_only() -> None:
    with pytest.raises(ValueError, match="whole acquisitions"):
        strip_maps(np.zeros((FRAMES * VIALS * REGIONS - 1, P, P), np.float32), FRAMES, VIALS, REGIONS, PARAMS)


def test_the_recipe_must_tile_each_vial_column() -> None:
    recipe = load_recipe()
    check_recipe(recipe)
    gap = replace(recipe.regions[2], rect=Rect(0, 520, 256, 256))
    with pytest.raises(CalibrationError, match="stacked without gaps"):
        check_recipe(replace(recipe, regions=(*recipe.regions[:2], gap, *recipe.regions[3:])))
    with pytest.raises(CalibrationError, match="one pitch"):
        check_recipe(replace(recipe, vials=((0, 0), (256, 0), (600, 0), (768, 0), (1024, 0))))


def test_the_statistics_remember_their_map() -> None:
    layout = PatchLayout(FRAMES, VIALS, REGIONS)
    stats = np.ones((REGIONS, 4, 4), np.float32)
    model = LocalScoreModel(layout, True, stats, stats, 1.5, MAP_STRIP)
    assert LocalScoreModel.from_bytes(model.to_bytes()).anomaly_map == MAP_STRIP
    with pytest.raises(CalibrationError, match="unknown map"):
        LocalScoreModel(layout, True, stats, stats, 1.5, "wavelets")


def test_tensorflow_twin_equals_the_reference() -> None:
    tf = pytest.importorskip("tensorflow")
    from trainer.strip_reference_tf import strip_maps_tf

    patches = np.concatenate([_strip(np.random.default_rng(3), defect=(0, 100, 40)), _strip(np.random.default_rng(4))])
    want = strip_maps(patches, FRAMES, VIALS, REGIONS, PARAMS)
    got = tf.function(lambda x: strip_maps_tf(x, PatchLayout(FRAMES, VIALS, REGIONS), PARAMS))(
        tf.constant(patches[..., None])).numpy()
    assert got.shape == want.shape
    np.testing.assert_allclose(got, want, atol=1e-5)


def _liquid_strip(rng: np.random.Generator, foam_on: int | None = None) -> np.ndarray:
    """Strips of 3 regions whose R2 holds liquid filled to a different level in each vial and frame."""
    patches = _strip(rng).reshape(FRAMES, VIALS, REGIONS, P, P)
    liquid = np.empty((FRAMES, VIALS, 1, P, P), np.float32)
    for f in range(FRAMES):
        order = rng.permutation(VIALS)  # every vial at its own level, 6 px apart, shuffled each frame
        for v in range(VIALS):
            level = 12 + 6 * int(order[v]) + int(rng.integers(0, 2))
            img = np.full((P, P), 0.8, np.float32)
            img[level + 3:] = 0.6                   # liquid
            img[level:level + 3] = 0.3              # the dark meniscus band
            if foam_on == v:
                img[level + 5:level + 9, 28:34] = 0.35  # foam just under the meniscus, one vial
            liquid[f, v, 0] = img + rng.normal(0, 0.004, img.shape).astype(np.float32)
    return np.concatenate([patches, liquid], axis=2).reshape(-1, P, P)


LIQUID = StripReferenceParams(liquid_region=2, meniscus_rows=(8, 48), meniscus_half_width=16, native_side=P,
                              liquid_reference_row=-1)  # the liquid map in camera rows (version 7 and earlier)
IN_MENISCUS_ROWS = replace(LIQUID, liquid_reference_row=24)


def test_the_liquid_is_aligned_by_each_vials_meniscus() -> None:
    by_rotation = strip_maps(_liquid_strip(np.random.default_rng(5)), FRAMES, VIALS, 3, replace(LIQUID, liquid_region=-1))
    by_level = strip_maps(_liquid_strip(np.random.default_rng(5)), FRAMES, VIALS, 3, LIQUID)
    foam = strip_maps(_liquid_strip(np.random.default_rng(5), foam_on=2), FRAMES, VIALS, 3, LIQUID)
    liquid = np.s_[:, :, 2, 26 - SSIM_CROP:]  # rows a shift of up to 26 px could bring in from R1's texture excluded
    assert by_rotation.reshape(FRAMES, VIALS, 3, *by_rotation.shape[1:])[liquid].max() > 0.2  # fill levels differ
    assert by_level.reshape(FRAMES, VIALS, 3, *by_level.shape[1:])[liquid].max() < 0.02
    assert foam.reshape(FRAMES, VIALS, 3, *foam.shape[1:])[:, 2, 2].max() > 0.1


@pytest.mark.parametrize("params", [LIQUID, IN_MENISCUS_ROWS], ids=["camera-rows", "meniscus-rows"])
def test_tensorflow_twin_aligns_the_liquid_as_the_reference(params: StripReferenceParams) -> None:
    tf = pytest.importorskip("tensorflow")
    from trainer.strip_reference_tf import strip_maps_tf

    patches = np.concatenate([_liquid_strip(np.random.default_rng(6), foam_on=1), _liquid_strip(np.random.default_rng(7))])
    want = strip_maps(patches, FRAMES, VIALS, 3, params)
    got = tf.function(lambda x: strip_maps_tf(x, PatchLayout(FRAMES, VIALS, 3), params))(
        tf.constant(patches[..., None])).numpy()
    np.testing.assert_allclose(got, want, atol=1e-5)


def _sloshing_strip(rng: np.random.Generator, foam_vial: int, foam_row: int) -> tuple[np.ndarray, np.ndarray]:
    """(patches, levels [F, V]): R2 filled to its own level per vial, sloshing by a few px from frame
    to frame, with foam stuck to one vial's wall at a fixed camera row."""
    patches = _strip(rng).reshape(FRAMES, VIALS, REGIONS, P, P)
    rest = 14 + 5 * rng.permutation(VIALS)
    levels = rest[None, :] + np.array([[0], [4], [-3]])[:FRAMES]
    liquid = np.empty((FRAMES, VIALS, 1, P, P), np.float32)
    for f in range(FRAMES):
        for v in range(VIALS):
            img = np.full((P, P), 0.8, np.float32)
            img[levels[f, v] + 3:] = 0.6
            img[levels[f, v]:levels[f, v] + 3] = 0.3
            if v == foam_vial:
                img[foam_row:foam_row + 3, 28:36] *= 0.6
            liquid[f, v, 0] = img + rng.normal(0, 0.004, img.shape).astype(np.float32)
    return np.concatenate([patches, liquid], axis=2).reshape(-1, P, P), levels


def test_the_liquid_is_handed_on_in_each_vials_meniscus_rows() -> None:
    """Each vial's liquid map moves so that its mean meniscus over the frames sits on the reference
    row, by the same rows in every frame: foam at a fixed place of the tube stays on one row of the
    map in all frames (the minimum over frames still sees it), where the vial's level puts it."""
    rng_seed, vial = 13, 3
    _, levels = _sloshing_strip(np.random.default_rng(rng_seed), foam_vial=vial, foam_row=0)
    foam_row = int(levels[:, vial].mean().round()) + 8  # 8 rows under its resting level
    patches, levels = _sloshing_strip(np.random.default_rng(rng_seed), foam_vial=vial, foam_row=foam_row)
    camera = strip_maps(patches, FRAMES, VIALS, 3, LIQUID).reshape(FRAMES, VIALS, 3, P - 10, P - 10)
    moved = strip_maps(patches, FRAMES, VIALS, 3, IN_MENISCUS_ROWS).reshape(FRAMES, VIALS, 3, P - 10, P - 10)
    meniscus = levels[:, vial] + 1  # the darkest row of the 3-row band
    shift = int(np.floor(meniscus.mean() + 0.5)) - IN_MENISCUS_ROWS.liquid_reference_row
    assert shift != 0
    rows = np.arange(P - 10)
    inside = (rows + shift >= 0) & (rows + shift < P - 10)
    np.testing.assert_array_equal(moved[:, vial, 2][:, inside], camera[:, vial, 2][:, rows[inside] + shift])
    at = foam_row - shift - SSIM_CROP  # the foam's first row on the moved map, the same in every frame
    assert (moved[:, vial, 2, at:at + 3, 24:30].mean(axis=(-2, -1)) > 0.05).all()
    assert (moved[:, vial, 2, at - 6:at - 3, 24:30].max(axis=(-2, -1)) < 0.02).all()
    np.testing.assert_array_equal(moved[:, :, :2], camera[:, :, :2])  # the other regions keep camera rows


def _lit_unevenly(patches: np.ndarray, per_vial: float) -> np.ndarray:
    """The strip under a backlight that brightens by ``per_vial`` (relative) from one vial to the next."""
    x = patches.reshape(FRAMES, VIALS, -1, P, P).copy()
    x *= (1.0 + per_vial * (np.arange(VIALS) - VIALS // 2))[None, :, None, None, None].astype(np.float32)
    return np.clip(x, 0, 1).reshape(patches.shape)


def test_a_light_gradient_across_the_strip_cancels() -> None:
    """1.6 % more light per vial (the simulator's steepest gradient) is more than the noise's range:
    without equalisation every pixel of the end vials lies outside the others' range."""
    rng = np.random.default_rng(8)
    even = strip_maps(_strip(rng), FRAMES, VIALS, REGIONS, PARAMS)
    uneven = _lit_unevenly(_strip(np.random.default_rng(8)), 0.016)
    equalised = strip_maps(uneven, FRAMES, VIALS, REGIONS, PARAMS)
    raw = strip_maps(uneven, FRAMES, VIALS, REGIONS, replace(PARAMS, equalise_light=False))
    assert equalised.mean() < 2 * even.mean() + 1e-4
    assert raw.mean() > 5 * equalised.mean() and raw.max() > 0.003
    spot = strip_maps(_lit_unevenly(_strip(np.random.default_rng(8), defect=(4, 40, 20)), 0.016), FRAMES, VIALS,
                      REGIONS, PARAMS)
    peak = _by_position(spot).max(axis=(-2, -1))
    assert peak[:, 4, 0].min() > 4 * np.delete(peak, 4, axis=1).max()  # the spot, on an end vial, still stands out


def test_tensorflow_twin_equalises_the_light_as_the_reference() -> None:
    tf = pytest.importorskip("tensorflow")
    from trainer.strip_reference_tf import strip_maps_tf

    patches = np.concatenate([_lit_unevenly(_strip(np.random.default_rng(9), defect=(1, 30, 30)), 0.016),
                              _lit_unevenly(_strip(np.random.default_rng(10)), -0.01)])
    want = strip_maps(patches, FRAMES, VIALS, REGIONS, PARAMS)
    got = tf.function(lambda x: strip_maps_tf(x, PatchLayout(FRAMES, VIALS, REGIONS), PARAMS))(
        tf.constant(patches[..., None])).numpy()
    np.testing.assert_allclose(got, want, atol=1e-5)


def test_settings_scale_with_a_resampled_patch_side() -> None:
    native = StripReferenceParams()
    assert native.at_side(native.native_side) is native
    quarter = native.at_side(64)
    assert quarter.native_side == 64 and quarter.sigma == pytest.approx(native.sigma / 4)
    assert quarter.tolerance == max(1, round(native.tolerance / 4)) and quarter.meniscus_rows == (8, 32)
    assert len(quarter.steps) == len(native.steps) and quarter.steps.max() == pytest.approx(native.steps.max() / 4)
    assert quarter.at_side(64) is quarter


def test_tensorflow_twin_scales_the_settings_as_the_reference() -> None:
    """A 64 px profile of 256 px settings: both implementations scale them alike (the resolution curve)."""
    tf = pytest.importorskip("tensorflow")
    from trainer.strip_reference_tf import strip_maps_tf

    native = StripReferenceParams(liquid_region=2, meniscus_rows=(32, 192), meniscus_half_width=64, native_side=4 * P)
    patches = np.concatenate([_liquid_strip(np.random.default_rng(11), foam_on=3), _liquid_strip(np.random.default_rng(12))])
    want = strip_maps(patches, FRAMES, VIALS, 3, native)
    assert not np.allclose(want, strip_maps(patches, FRAMES, VIALS, 3, replace(native, native_side=P)))
    got = tf.function(lambda x: strip_maps_tf(x, PatchLayout(FRAMES, VIALS, 3), native))(
        tf.constant(patches[..., None])).numpy()
    np.testing.assert_allclose(got, want, atol=1e-5)
