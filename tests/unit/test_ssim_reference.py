"""The numpy reference SSIM behaves as Wang et al. 2004 says."""
from __future__ import annotations

import numpy as np
import pytest

from vialguard.ssim import anomaly_score, gaussian_window, ssim


def test_window_is_normalised_11x11() -> None:
    w = gaussian_window()
    assert w.shape == (11, 11)
    assert w.sum() == pytest.approx(1.0)


def test_identical_images_score_zero() -> None:
    x = np.random.default_rng(0).random((3, 32, 32, 1))
    assert np.allclose(anomaly_score(x, x), 0.0, atol=1e-12)


def test_ssim_is_symmetric_and_bounded() -> None:
    rng = np.random.default_rng(1)
    x, y = rng.random((2, 4, 40, 40, 1))
    a, b = ssim(x, y), ssim(y, x)
    assert np.allclose(a, b)
    assert np.all(a <= 1.0) and np.all(a >= -1.0)


def test_a_local_defect_raises_the_score_with_its_contrast() -> None:
    x = np.full((1, 64, 64, 1), 0.6)
    light, strong = x.copy(), x.copy()
    light[0, 30:34, 30:34] = 0.5
    strong[0, 30:34, 30:34] = 0.1
    assert 0 < anomaly_score(x, light)[0] < anomaly_score(x, strong)[0]


def test_matches_a_direct_2d_computation() -> None:
    rng = np.random.default_rng(2)
    x, y = rng.random((2, 16, 16))
    w = gaussian_window()
    vals = []
    for i in range(16 - 10):
        for j in range(16 - 10):
            a, b = x[i : i + 11, j : j + 11], y[i : i + 11, j : j + 11]
            mx, my = (w * a).sum(), (w * b).sum()
            sx = (w * a * a).sum() - mx**2
            sy = (w * b * b).sum() - my**2
            sxy = (w * a * b).sum() - mx * my
            vals.append(((2 * mx * my + 1e-4) * (2 * sxy + 9e-4)) / ((mx**2 + my**2 + 1e-4) * (sx + sy + 9e-4)))
    assert ssim(x, y)[0] == pytest.approx(np.mean(vals), abs=1e-12)


def test_shape_mismatch_is_refused() -> None:
    with pytest.raises(ValueError, match="same shape"):
        ssim(np.zeros((1, 16, 16)), np.zeros((1, 16, 17)))
