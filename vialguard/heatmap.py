"""Heatmap H = min-max normalised |X - X_hat| (paper eq. 10-11), per patch."""
from __future__ import annotations

import numpy as np

EPSILON = 1e-8


def heatmap(x: np.ndarray, x_hat: np.ndarray) -> np.ndarray:
    """Per-patch min-max normalised absolute difference; same shape as x.

    A patch reconstructed perfectly (max == min) gives an all-zero map instead of
    a division by zero. The exported graph uses the same epsilon.
    """
    diff = np.abs(np.asarray(x, np.float32) - np.asarray(x_hat, np.float32))
    axes = tuple(range(1, diff.ndim))
    lo = diff.min(axis=axes, keepdims=True)
    hi = diff.max(axis=axes, keepdims=True)
    return (diff - lo) / np.maximum(hi - lo, EPSILON)


def to_png_gray(h: np.ndarray) -> bytes:
    """Encode one heatmap or patch [H, W(, 1)] as an 8-bit PNG for the operator screens.

    Float in [0, 1] is rounded to 256 grey levels; a uint8 patch (the camera's pixels)
    is written as it is, the same image its float patch gives; a uint16 one is scaled
    to [0, 1] first, as patching scales it.
    """
    import cv2

    if h.dtype == np.uint8:
        image = np.squeeze(h)
    else:
        unit = np.squeeze(h).astype(np.float32) / np.float32(65535.0) if h.dtype == np.uint16 else np.squeeze(h)
        image = np.clip(unit * 255.0 + 0.5, 0, 255).astype(np.uint8)
    ok, buf = cv2.imencode(".png", image)
    if not ok:
        raise ValueError("PNG encoding of the heatmap failed")
    return buf.tobytes()
