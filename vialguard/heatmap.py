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
    """Encode one heatmap [H, W(, 1)] in [0, 1] as an 8-bit PNG for the operator screens."""
    import cv2

    image = np.clip(np.squeeze(h) * 255.0 + 0.5, 0, 255).astype(np.uint8)
    ok, buf = cv2.imencode(".png", image)
    if not ok:
        raise ValueError("PNG encoding of the heatmap failed")
    return buf.tobytes()
