"""The one patching code path: order, labels, scaling and rank images."""
from __future__ import annotations

import numpy as np
import pytest

from vialguard.errors import AcquisitionError
from vialguard.patching import (
    acquisition_labels,
    cut_acquisition,
    cut_acquisition_pixels,
    cut_frame,
    cut_frame_pixels,
    is_native,
    rank_images,
    select_inspected,
    to_unit_float,
)
from vialguard.recipe import Recipe, load_recipe

RECIPE = load_recipe()


def _tagged_frame(seed: int = 0) -> np.ndarray:
    """A frame whose every region holds a distinct constant, so patch order is visible."""
    frame = np.zeros((RECIPE.frame_height, RECIPE.frame_width), np.uint8)
    for v in range(5):
        for r in range(4):
            rect = RECIPE.region_rect(v, r)
            frame[rect.y : rect.y + rect.height, rect.x : rect.x + rect.width] = 10 * v + r + seed
    return frame


def test_patch_order_is_vial_major_then_region() -> None:
    patches = cut_frame(_tagged_frame(), RECIPE)
    assert patches.shape == (20, 256, 256, 1)
    assert patches.dtype == np.float32
    for i in range(20):
        v, r = divmod(i, 4)
        assert np.all(patches[i] == np.float32((10 * v + r) / 255.0))


def test_acquisition_has_60_patches_with_matching_labels() -> None:
    frames = [_tagged_frame(s) for s in (0, 1, 2)]
    patches = cut_acquisition(frames, RECIPE)
    labels = acquisition_labels(RECIPE)
    assert patches.shape[0] == len(labels) == 60
    for i, label in enumerate(labels):
        assert i == (label.frame * 5 + label.vial) * 4 + label.region
        expected = (10 * label.vial + label.region + label.frame) / 255.0
        assert patches[i, 0, 0, 0] == pytest.approx(expected)


def test_mono16_is_scaled_by_65535() -> None:
    frame = np.full((RECIPE.frame_height, RECIPE.frame_width), 65535, np.uint16)
    frame[:256, :256] = 0
    patches = cut_frame(frame, RECIPE)
    assert patches[0].max() == 0.0 and patches[1].min() == 1.0


def test_smaller_patch_size_resizes_each_region() -> None:
    patches = cut_frame(_tagged_frame(), RECIPE, patch_size=128)
    assert patches.shape == (20, 128, 128, 1)
    assert patches[7, 64, 64, 0] == pytest.approx((10 * 1 + 3) / 255.0)


def test_wrong_frame_size_is_a_clear_error() -> None:
    with pytest.raises(AcquisitionError, match="1280x1024"):
        cut_frame(np.zeros((100, 100), np.uint8), RECIPE)


def test_wrong_number_of_inspected_frames_is_refused() -> None:
    with pytest.raises(AcquisitionError, match="inspects 3 frames"):
        cut_acquisition([_tagged_frame()], RECIPE)


def test_select_inspected_picks_1st_8th_16th() -> None:
    frames = [np.full((4, 4), i, np.uint8) for i in range(16)]
    picked = select_inspected(frames, RECIPE)
    assert [int(f[0, 0]) for f in picked] == [0, 7, 15]
    with pytest.raises(AcquisitionError, match="16 frames"):
        select_inspected(frames[:15], RECIPE)


def test_rank_images_keep_stuck_pixels_and_separate_moving_ones() -> None:
    frames = np.full((16, 8, 8), 200, np.uint8)
    frames[:, 1, 1] = 10            # stuck particle: dark in every frame
    for i in range(16):
        frames[i, 5, i % 8] = 20    # a bubble moving along a row
    low, high = rank_images(frames)
    assert low[1, 1] == 10 and high[1, 1] == 10
    assert np.all(low[5] == 20) and np.all(high[5] == 200)


def _recipe_with(**changes: object) -> Recipe:
    import dataclasses

    return dataclasses.replace(RECIPE, **changes)


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16], ids=["MONO8", "MONO16"])
def test_scaled_pixel_patches_equal_the_float_patches_bit_for_bit(dtype: type) -> None:
    recipe = _recipe_with(bit_depth=8 if dtype == np.uint8 else 16)
    rng = np.random.default_rng(7)
    top = np.iinfo(dtype).max
    frames = [rng.integers(0, top, (recipe.frame_height, recipe.frame_width), dtype=dtype, endpoint=True)
              for _ in range(3)]
    frames[0][:2, :2] = (0, top)  # both ends of the range
    pixels = cut_acquisition_pixels(frames, recipe)
    assert pixels.dtype == dtype and pixels.shape == (60, 256, 256, 1)
    np.testing.assert_array_equal(to_unit_float(pixels).view(np.uint32),
                                  cut_acquisition(frames, recipe).view(np.uint32))


def test_pixel_patches_are_written_into_the_buffer_given() -> None:
    frames = [_tagged_frame(s) for s in (0, 1, 2)]
    buffer = np.zeros((60, 256, 256, 1), np.uint8)
    assert cut_acquisition_pixels(frames, RECIPE, out=buffer) is buffer
    assert buffer[59, 0, 0, 0] == 10 * 4 + 3 + 2  # last vial, last region, third frame
    with pytest.raises(ValueError, match="out must be"):
        cut_acquisition_pixels(frames, RECIPE, out=np.zeros((60, 256, 256, 1), np.uint16))


def test_a_resampled_profile_cannot_be_cut_as_raw_pixels() -> None:
    assert is_native(RECIPE) and not is_native(RECIPE, 64)
    small = _recipe_with(patch_size=64)
    with pytest.raises(AcquisitionError, match="resampled"):
        cut_frame_pixels(_tagged_frame(), small)
