"""The trainer's TensorFlow SSIM is the numpy reference SSIM (DESIGN invariant 2)."""
from __future__ import annotations

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np
import pytest

from trainer.ssim_tf import anomaly_score, ssim
from vialguard import ssim as reference


def _structured(n: int, size: int, rng: np.random.Generator) -> np.ndarray:
    yy, xx = np.mgrid[0:size, 0:size] / size
    base = 0.5 + 0.4 * np.sin(6 * np.pi * xx) * np.cos(4 * np.pi * yy)
    out = np.repeat(base[None, ..., None], n, axis=0)
    out[:, size // 4 : size // 2, size // 3 : size // 2 + 3] = 0.05  # a dark blob
    return np.clip(out + rng.normal(0, 0.02, out.shape), 0, 1).astype(np.float32)


@pytest.mark.parametrize("size", [16, 32, 64])
def test_tf_ssim_equals_numpy_reference_on_random_patches(size: int) -> None:
    rng = np.random.default_rng(size)
    x = rng.random((5, size, size, 1), dtype=np.float32)
    y = np.clip(x + rng.normal(0, 0.2, x.shape), 0, 1).astype(np.float32)
    got = ssim(x, y).numpy()
    assert got.shape == (5,)
    np.testing.assert_allclose(got, reference.ssim(x, y), atol=1e-5)


def test_tf_ssim_equals_numpy_reference_on_structured_patches() -> None:
    rng = np.random.default_rng(7)
    x = _structured(4, 48, rng)
    y = np.clip(_structured(4, 48, rng) * 0.9 + 0.05, 0, 1).astype(np.float32)
    np.testing.assert_allclose(ssim(x, y).numpy(), reference.ssim(x, y), atol=1e-5)
    np.testing.assert_allclose(
        anomaly_score(x, y).numpy(), reference.anomaly_score(x, y), atol=1e-5
    )


def test_tf_ssim_of_identical_patches_is_one() -> None:
    x = _structured(3, 32, np.random.default_rng(1))
    np.testing.assert_allclose(ssim(x, x).numpy(), 1.0, atol=1e-5)


@pytest.mark.parametrize("group", [1, 3, 6])
def test_grouped_ssim_map_is_the_same_map_patch_for_patch(group: int) -> None:
    """The served graph's layout (patches side by side as channels) changes no number
    beyond float rounding, and keeps every patch in its place."""
    from trainer.ssim_tf import ssim_map, ssim_map_grouped

    rng = np.random.default_rng(group)
    x = _structured(6, 32, rng)
    x[::2] = rng.random(x[::2].shape, dtype=np.float32)      # patches unlike each other
    y = np.clip(x + rng.normal(0, 0.1, x.shape), 0, 1).astype(np.float32)
    grouped = ssim_map_grouped(x, y, group).numpy()
    assert grouped.shape == (6, 22, 22, 1)
    np.testing.assert_allclose(grouped, ssim_map(x, y).numpy(), atol=2e-6)
    np.testing.assert_allclose(grouped[..., 0], reference.ssim_map(x[..., 0], y[..., 0]), atol=1e-5)
