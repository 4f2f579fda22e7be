"""Camera frames -> numpy: every way a camera integration can get a frame wrong is refused with a clear message."""
from __future__ import annotations

import numpy as np
import pytest

from preprocessor.decode import decode_frame, decode_inspected
from preprocessor.encode import build_acquisition, encode_frame
from preprocessor.validate import RecipeMismatch, check_identity
from vialguard.errors import AcquisitionError
from vialguard.patching import cut_acquisition, select_inspected
from vialguard.recipe import Recipe, parse_recipe
from vialguard.v1 import inspection_pb2 as pb


def small_recipe(bit_depth: int = 8) -> Recipe:
    """The shipped recipe's layout at 1/16 scale: 5 vials of 4 regions of 16x16 in an 80x64 frame."""
    return parse_recipe({
        "id": f"small-{bit_depth}", "frame": {"width": 80, "height": 64, "bit_depth": bit_depth},
        "frames_per_acquisition": 16, "inspected_frames": [0, 7, 15], "patch_size": 16,
        "vials": [{"x": 16 * v, "y": 0} for v in range(5)],
        "regions": [{"id": f"R{r}", "x": 0, "y": 16 * r, "width": 16, "height": 16} for r in range(4)],
    })


def random_frames(recipe: Recipe, count: int = 16, seed: int = 0) -> list[np.ndarray]:
    dtype = np.uint8 if recipe.bit_depth == 8 else np.uint16
    high = 256 if recipe.bit_depth == 8 else 65536
    rng = np.random.default_rng(seed)
    return [rng.integers(0, high, (recipe.frame_height, recipe.frame_width)).astype(dtype) for _ in range(count)]


@pytest.mark.parametrize("bit_depth", [8, 16])
@pytest.mark.parametrize("encoding", [pb.RAW, pb.PNG])
def test_decoded_frame_equals_the_camera_image(bit_depth: int, encoding: int) -> None:
    recipe = small_recipe(bit_depth)
    image = random_frames(recipe, 1, seed=bit_depth)[0]
    decoded = decode_frame(encode_frame(image, 3, encoding), recipe)
    assert decoded.dtype == image.dtype
    np.testing.assert_array_equal(decoded, image)


def test_mono16_raw_is_read_little_endian() -> None:
    recipe = small_recipe(16)
    image = np.full((64, 80), 0x0102, np.uint16)
    frame = pb.Frame(index=0, width=80, height=64, pixel_format=pb.MONO16, encoding=pb.RAW,
                     data=bytes([0x02, 0x01]) * (80 * 64))
    np.testing.assert_array_equal(decode_frame(frame, recipe), image)


@pytest.mark.parametrize("encoding", [pb.RAW, pb.PNG])
def test_full_or_inspected_only_acquisitions_give_the_same_patches(encoding: int) -> None:
    recipe = small_recipe()
    frames = random_frames(recipe)
    full = build_acquisition("a", "p", 0, recipe.id, frames, encoding=encoding)
    inspected = select_inspected(frames, recipe)
    partial = build_acquisition("a", "p", 0, recipe.id, inspected, indices=recipe.inspected_frames, encoding=encoding)
    expected = cut_acquisition(inspected, recipe)
    for acquisition in (full, partial):
        np.testing.assert_array_equal(cut_acquisition(decode_inspected(acquisition.frames, recipe), recipe), expected)


def test_frames_may_arrive_in_any_order() -> None:
    recipe = small_recipe()
    frames = random_frames(recipe)
    acquisition = build_acquisition("a", "p", 0, recipe.id, frames)
    shuffled = list(reversed(acquisition.frames))
    for got, want in zip(decode_inspected(shuffled, recipe), select_inspected(frames, recipe)):
        np.testing.assert_array_equal(got, want)


def _frame(recipe: Recipe, **changes: object) -> pb.Frame:
    frame = encode_frame(random_frames(recipe, 1)[0], 0)
    for name, value in changes.items():
        setattr(frame, name, value)
    return frame


@pytest.mark.parametrize(
    ("changes", "words"),
    [
        ({"width": 81}, ["declared 81x64", "expects 80x64"]),
        ({"height": 1024}, ["declared 80x1024", "expects 80x64"]),
        ({"pixel_format": pb.MONO16}, ["MONO16", "expects MONO8"]),
        ({"pixel_format": pb.PIXEL_FORMAT_UNSPECIFIED}, ["pixel_format not set"]),
        ({"encoding": pb.ENCODING_UNSPECIFIED}, ["encoding not set"]),
        ({"index": 16}, ["index out of range", "0..15"]),
        ({"data": b"\x00" * (80 * 64 - 7)}, ["5113 bytes", "expected 80x64x1 = 5120", "truncated"]),
        ({"encoding": pb.PNG, "data": b"not a png at all, just bytes"}, ["not a PNG"]),
    ],
)
def test_bad_frame_is_refused_with_a_message_naming_the_problem(changes: dict, words: list[str]) -> None:
    recipe = small_recipe()
    with pytest.raises(AcquisitionError) as raised:
        decode_frame(_frame(recipe, **changes), recipe)
    for word in words:
        assert word in str(raised.value)
    assert str(raised.value).startswith(f"frame {_frame(recipe, **changes).index}")


def test_truncated_png_is_refused() -> None:
    recipe = small_recipe()
    png = encode_frame(random_frames(recipe, 1)[0], 0, pb.PNG)
    png.data = png.data[: len(png.data) // 2]
    with pytest.raises(AcquisitionError, match="corrupt or truncated"):
        decode_frame(png, recipe)


def test_png_of_other_size_or_depth_or_colour_is_refused() -> None:
    import cv2

    recipe = small_recipe()
    small = encode_frame(np.zeros((32, 80), np.uint8), 0, pb.PNG)
    small.height = 64  # declares the recipe size, but the PNG is smaller
    with pytest.raises(AcquisitionError, match="PNG is 80x32"):
        decode_frame(small, recipe)
    deep = encode_frame(np.zeros((64, 80), np.uint16), 0, pb.PNG)
    deep.pixel_format = pb.MONO8
    with pytest.raises(AcquisitionError, match="16-bit pixels"):
        decode_frame(deep, recipe)
    colour = _frame(recipe, encoding=pb.PNG, data=cv2.imencode(".png", np.zeros((64, 80, 3), np.uint8))[1].tobytes())
    with pytest.raises(AcquisitionError, match="not single-channel"):
        decode_frame(colour, recipe)


def test_missing_inspected_frames_are_named() -> None:
    recipe = small_recipe()
    frames = random_frames(recipe)
    acquisition = build_acquisition("a", "p", 0, recipe.id, frames)
    del acquisition.frames[15]
    del acquisition.frames[7]
    with pytest.raises(AcquisitionError) as raised:
        decode_inspected(acquisition.frames, recipe)
    assert "[7, 15] missing" in str(raised.value)
    assert "[0, 7, 15]" in str(raised.value)


def test_empty_and_duplicated_frame_lists_are_refused() -> None:
    recipe = small_recipe()
    with pytest.raises(AcquisitionError, match="no frames"):
        decode_inspected([], recipe)
    frame = encode_frame(random_frames(recipe, 1)[0], 7)
    with pytest.raises(AcquisitionError, match="frame 7 is sent twice"):
        decode_inspected([frame, frame], recipe)


@pytest.mark.parametrize(
    ("field", "value", "words"),
    [
        ("acquisition_id", "", "acquisition_id is empty"),
        ("acquisition_id", "a b", "spaces"),
        ("acquisition_id", "x" * 201, "at most 200"),
        ("product_id", "", "product_id is empty"),
        ("recipe_id", "", "this preprocessor runs recipe 'small-8'"),
    ],
)
def test_bad_identity_fields_are_refused(field: str, value: str, words: str) -> None:
    recipe = small_recipe()
    acquisition = pb.Acquisition(acquisition_id="a-1", product_id="p-1", recipe_id=recipe.id)
    setattr(acquisition, field, value)
    with pytest.raises(AcquisitionError, match=words):
        check_identity(acquisition, recipe)


def test_other_recipe_is_a_mismatch_naming_both_recipes() -> None:
    recipe = small_recipe()
    acquisition = pb.Acquisition(acquisition_id="a-1", product_id="p-1", recipe_id="bfs5-2ml")
    with pytest.raises(RecipeMismatch) as raised:
        check_identity(acquisition, recipe)
    assert "'bfs5-2ml'" in str(raised.value) and "'small-8'" in str(raised.value)
