"""The one SSIM (DESIGN invariant 2): Wang et al. 2004.

11x11 Gaussian window, sigma 1.5, K1 0.01, K2 0.03, data range 1, computed over the
'valid' part of the image (no padding) and averaged. The trainer's TensorFlow SSIM
(loss, calibration, exported graph) uses these constants and is tested against this
numpy reference; the score of a patch is phi = 1 - SSIM(X, X_hat).
"""
from __future__ import annotations

import numpy as np

WINDOW_SIZE = 11
SIGMA = 1.5
K1 = 0.01
K2 = 0.03
DATA_RANGE = 1.0
C1 = (K1 * DATA_RANGE) ** 2
C2 = (K2 * DATA_RANGE) ** 2


def gaussian_kernel_1d(size: int = WINDOW_SIZE, sigma: float = SIGMA) -> np.ndarray:
    """Normalised 1-D Gaussian; the 2-D window is its outer product."""
    coords = np.arange(size, dtype=np.float64) - (size - 1) / 2.0
    g = np.exp(-(coords**2) / (2.0 * sigma**2))
    return g / g.sum()


def gaussian_window(size: int = WINDOW_SIZE, sigma: float = SIGMA) -> np.ndarray:
    g = gaussian_kernel_1d(size, sigma)
    return np.outer(g, g)


def _filter_valid(image: np.ndarray, g: np.ndarray) -> np.ndarray:
    """Separable 'valid' correlation of a batch [N, H, W] with the 1-D kernel g."""
    k = g.shape[0]
    h, w = image.shape[-2:]
    rows = sum(g[i] * image[..., i : h - k + 1 + i, :] for i in range(k))
    return sum(g[j] * rows[..., :, j : w - k + 1 + j] for j in range(k))


def ssim_map(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Local SSIM of each pair of images: [N, H, W(, 1)] -> [N, H-10, W-10] (the 'valid' part)."""
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    if x.shape != y.shape:
        raise ValueError(f"ssim needs two batches of the same shape, got {x.shape} and {y.shape}")
    if x.ndim == 4:
        x, y = x[..., 0], y[..., 0]
    if x.ndim == 2:
        x, y = x[None], y[None]
    if min(x.shape[-2:]) < WINDOW_SIZE:
        raise ValueError(f"images must be at least {WINDOW_SIZE}x{WINDOW_SIZE}, got {x.shape[-2:]}")
    g = gaussian_kernel_1d()
    mu_x, mu_y = _filter_valid(x, g), _filter_valid(y, g)
    sxx = _filter_valid(x * x, g) - mu_x**2
    syy = _filter_valid(y * y, g) - mu_y**2
    sxy = _filter_valid(x * y, g) - mu_x * mu_y
    num = (2 * mu_x * mu_y + C1) * (2 * sxy + C2)
    den = (mu_x**2 + mu_y**2 + C1) * (sxx + syy + C2)
    return num / den


def ssim(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """SSIM of each pair of images. x, y: [N, H, W, 1] or [N, H, W] in [0, 1]; returns [N]."""
    return ssim_map(x, y).mean(axis=(-2, -1))


def anomaly_score(x: np.ndarray, x_hat: np.ndarray) -> np.ndarray:
    """phi = 1 - SSIM(X, X_hat) per patch (paper eq. 9)."""
    return 1.0 - ssim(x, x_hat)
