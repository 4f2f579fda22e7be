"""The reject detail's images: the heatmap in false colour over the patch, at the patch's own size."""
from __future__ import annotations

import cv2
import numpy as np
import pytest

from hmi import overlay
from vialguard.heatmap import to_png_gray


def _decode(png: bytes) -> np.ndarray:
    return cv2.imdecode(np.frombuffer(png, np.uint8), cv2.IMREAD_UNCHANGED)


@pytest.mark.parametrize("size", [32, 64, 256])
def test_overlay_colours_the_hot_spot_and_leaves_cold_areas_as_the_patch(size: int) -> None:
    patch = np.full((size, size), 0.5, np.float32)
    heat = np.zeros((size, size), np.float32)
    heat[size // 4: size // 2, size // 4: size // 2] = 1.0
    image = _decode(overlay.overlay(to_png_gray(patch), to_png_gray(heat)))
    factor = max(1, -(-overlay.SHOWN_PX // size))
    assert image.shape == (size * factor, size * factor, 3)
    cold = image[0, 0].astype(int)
    hot = image[(size * 3 // 8) * factor, (size * 3 // 8) * factor].astype(int)
    assert abs(cold[0] - cold[2]) <= 1 and abs(cold[0] - 128) <= 2       # gray, as the patch
    assert hot[2] > 100 and hot[2] > hot[0] + 60                          # red where it is hottest (BGR)


def test_false_colour_and_enlarged_keep_square_pixels() -> None:
    heat = np.linspace(0, 1, 16 * 16, dtype=np.float32).reshape(16, 16)
    coloured = _decode(overlay.false_colour(to_png_gray(heat)))
    assert coloured.shape == (192, 192, 3)
    assert (coloured[:12, :12] == coloured[0, 0]).all()  # one source pixel -> one 12x12 block
    assert _decode(overlay.enlarged(to_png_gray(heat))).shape == (192, 192)


def test_an_unreadable_png_is_an_error_not_a_blank_image() -> None:
    with pytest.raises(ValueError):
        overlay.overlay(b"not a png", b"nor this")
