"""The heatmap of a patch laid over the patch in false colour, for the reject detail.

Blue-to-red (OpenCV's JET) where the reconstruction differs, blended in proportion to
the heat, so that cold areas show the patch as the camera saw it and the defect
stands out where the model could not reconstruct it. Sizes come from the images,
never from a constant: the patch size belongs to the model version.
"""
from __future__ import annotations

import cv2
import numpy as np

MAX_ALPHA = 0.7    # at the hottest pixel, this much of the colour and the rest of the patch
SHOWN_PX = 192     # images are scaled (nearest neighbour: pixels stay visible) to at least this size


def _decode(png: bytes) -> np.ndarray:
    image = cv2.imdecode(np.frombuffer(png, np.uint8), cv2.IMREAD_GRAYSCALE)
    if image is None:
        raise ValueError("not a readable PNG")
    return image


def _scaled(image: np.ndarray) -> np.ndarray:
    factor = max(1, int(np.ceil(SHOWN_PX / max(image.shape[:2]))))
    if factor == 1:
        return image
    return cv2.resize(image, (image.shape[1] * factor, image.shape[0] * factor), interpolation=cv2.INTER_NEAREST)


def _png(image: np.ndarray) -> bytes:
    ok, buf = cv2.imencode(".png", image)
    if not ok:
        raise ValueError("PNG encoding failed")
    return buf.tobytes()


def false_colour(heatmap_png: bytes) -> bytes:
    """The heatmap alone in false colour (when the patch itself is not kept)."""
    return _png(_scaled(cv2.applyColorMap(_decode(heatmap_png), cv2.COLORMAP_JET)))


def overlay(patch_png: bytes, heatmap_png: bytes) -> bytes:
    """Patch (grayscale) with its heatmap blended over it in false colour, as a colour PNG."""
    patch, heat = _decode(patch_png), _decode(heatmap_png)
    if heat.shape != patch.shape:
        heat = cv2.resize(heat, (patch.shape[1], patch.shape[0]), interpolation=cv2.INTER_LINEAR)
    colour = cv2.applyColorMap(heat, cv2.COLORMAP_JET).astype(np.float32)
    base = cv2.cvtColor(patch, cv2.COLOR_GRAY2BGR).astype(np.float32)
    # The map is min-max normalised, so most of a patch sits low: a power below 1 keeps mid heat visible.
    alpha = (np.power(heat.astype(np.float32) / 255.0, 0.75) * MAX_ALPHA)[..., None]
    blended = np.clip(base * (1.0 - alpha) + colour * alpha + 0.5, 0, 255).astype(np.uint8)
    return _png(_scaled(blended))


def enlarged(png: bytes) -> bytes:
    """A grayscale PNG scaled up for display, pixels kept square."""
    return _png(_scaled(_decode(png)))
