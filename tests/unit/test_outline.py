"""vialguard.outline: a vial's outline at sub-pixel precision, and a one-pixel bump on it."""
from __future__ import annotations

import numpy as np
import pytest

from trainer.outline_screen import KitOutlines, screen_lines
from vialguard.local_score import PatchLayout
from vialguard.outline import OutlineModel, edge_columns, outline_deviation, running_median

P = 256
LAYOUT = PatchLayout(3, 5, 4)


def _vial(left: np.ndarray, right: np.ndarray, blur: float = 1.2) -> np.ndarray:
    """[P, P] backlight 0.9 with dark plastic between the per-row columns ``left`` and ``right``."""
    x = np.arange(P, dtype=np.float64)[None, :] + 0.5
    inside = 1 / (1 + np.exp(-(x - left[:, None]) / blur)) * (1 / (1 + np.exp((x - right[:, None]) / blur)))
    return (0.9 - 0.6 * inside).astype(np.float32)


def _outline(rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """A neck: the outline narrows smoothly over the patch."""
    return 60 + 25 * np.sin(rows / 90.0), 196 - 25 * np.sin(rows / 90.0)


def _bump(rows: np.ndarray, centre: float, amplitude: float, span: float = 5.3) -> np.ndarray:
    return amplitude * np.exp(-(((rows - centre) / (span / 2)) ** 4))   # the simulator's neck bump


def _acquisition(bumped: tuple[int, int] | None = None, amplitude: float = 1.2, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    rows = np.arange(P) + 0.5
    patches = np.empty((LAYOUT.per_acquisition, P, P), np.float32)
    for f in range(3):
        for v in range(5):
            for r in range(4):
                left, right = _outline(rows)
                if bumped == (v, r):
                    left = left - _bump(rows, 120, amplitude)       # plastic bulging out on the left
                image = _vial(left, right) + rng.normal(0, 0.002, (P, P)).astype(np.float32)
                patches[(f * 5 + v) * 4 + r] = image
    return patches


def test_the_edge_is_found_to_a_tenth_of_a_pixel() -> None:
    rows = np.arange(P) + 0.5
    for shift in (0.0, 0.3, 0.5, 1.2):
        left, right = _outline(rows)
        moved = edge_columns(_vial(left + shift, right))
        still = edge_columns(_vial(left, right))
        np.testing.assert_allclose(moved[0] - still[0], shift, atol=0.1)
        np.testing.assert_allclose(moved[1] - still[1], 0.0, atol=0.05)


def test_a_row_without_an_outline_has_no_edge() -> None:
    edges = edge_columns(np.full((4, P, P), 0.9, np.float32))
    assert edges.shape == (4, 2, P)
    assert np.isnan(edges).all()


def test_the_running_median_keeps_a_smooth_outline_and_drops_a_short_bump() -> None:
    rows = np.arange(P) + 0.5
    smooth = _outline(rows)[0]
    assert np.abs(running_median(smooth) - smooth)[8:-8].max() < 0.05
    bumped = smooth + _bump(rows, 120, 1.2)
    assert (bumped - running_median(bumped))[118:123].max() > 0.8            # of 1.2 px: the window's median moves a little


def test_a_one_pixel_bump_stands_out_on_its_own_vial_and_region_only() -> None:
    deviation = outline_deviation(_acquisition(bumped=(3, 1)), LAYOUT, (1, 3))
    assert deviation.shape == (5, 2, 2, P)
    peaks = deviation[..., 8:-8].max(axis=-1)                     # [V, R', side]
    assert peaks[3, 0, 0] > 0.6                                   # vial 3, R1, left side (1.2 px, seen through the noise)
    others = np.ones_like(peaks, bool)
    others[3, 0, 0] = False
    assert peaks[others].max() < 0.25


def test_the_model_scores_the_bumped_vial_far_above_good_ones() -> None:
    good = np.stack([outline_deviation(_acquisition(seed=s), LAYOUT, (1,)) for s in range(4)])
    model = OutlineModel.fit(good, (1,))
    threshold = model.scores(good).max()
    light = model.scores(outline_deviation(_acquisition(bumped=(2, 1), amplitude=1.2, seed=9), LAYOUT, (1,)))
    assert light.shape == (5, 1)
    assert light[2, 0] > 3 * threshold
    assert light[2, 0] > 3 * np.delete(light[:, 0], 2).max()     # the strip's other vials stay near the good level


def test_fit_refuses_deviations_of_the_wrong_shape() -> None:
    with pytest.raises(ValueError, match="good deviations"):
        OutlineModel.fit(np.zeros((1, 5, 1, 2, P)), (1,))
    with pytest.raises(ValueError, match="good deviations"):
        OutlineModel.fit(np.zeros((3, 5, 2, 2, P)), (1,))


def test_the_screen_counts_runs_over_the_highest_good_calibration_vial() -> None:
    rng = np.random.default_rng(0)
    regions = (1,)

    def kit(defective_product: bool) -> KitOutlines:
        dev = rng.uniform(0, 0.05, (20, 5, 1, 2, P))
        product = np.repeat(["P0000", "P0001"], 10)
        label = np.array([False] * 10 + [defective_product] * 10)
        flags = np.zeros((20, 5, 1), bool)
        if defective_product:
            dev[10:17, 4, 0, 0, 100] = 5.0                    # 7 of 10 runs show the bump on vial 4
            flags[10:, 4, 0] = True
        return KitOutlines(dev, product, label, flags)

    lines = screen_lines(kit(False), kit(True), regions)
    assert lines[0].startswith("R1: threshold") and lines[0].endswith("over it: 0 of 10")
    assert "P0001 vial 4" in lines[1] and "7 of 10 runs over the threshold" in lines[1]


def test_the_tensorflow_twin_gives_numpys_deviations_and_scores() -> None:
    import tensorflow as tf

    from trainer.outline_tf import outline_deviation_tf, outline_scores_tf

    acquisitions = np.stack([_acquisition(bumped=(1, 1), seed=3), _acquisition(seed=4)])        # [2, 60, P, P]
    regions = (0, 1, 3)
    want = np.stack([outline_deviation(a, LAYOUT, regions) for a in acquisitions])
    got = outline_deviation_tf(tf.constant(acquisitions.reshape(-1, P, P, 1)), LAYOUT, regions).numpy()
    np.testing.assert_allclose(got, want, atol=2e-5)
    model = OutlineModel.fit(want, regions)
    scores = outline_scores_tf(tf.constant(acquisitions.reshape(-1, P, P, 1)), model, LAYOUT).numpy()
    np.testing.assert_allclose(scores, model.scores(want), rtol=1e-4, atol=2e-3)
    assert scores[0, 1, 1] == scores[0].max()                    # the bumped vial's R1 is the acquisition's top


def test_the_twin_converts_to_onnx_with_the_same_scores() -> None:
    import onnxruntime as ort
    import tensorflow as tf
    import tf2onnx

    from trainer.export import OPSET
    from trainer.outline_tf import outline_scores_tf

    acquisition = _acquisition(bumped=(4, 1), seed=5)
    regions = (1,)
    good = np.stack([outline_deviation(_acquisition(seed=s), LAYOUT, regions) for s in (6, 7)])
    model = OutlineModel.fit(good, regions)
    spec = tf.TensorSpec([None, P, P, 1], tf.float32, name="patches")
    proto, _ = tf2onnx.convert.from_function(tf.function(lambda x: outline_scores_tf(x, model, LAYOUT)),
                                             input_signature=[spec], opset=OPSET)
    session = ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"])
    served = session.run(None, {"patches": acquisition.reshape(-1, P, P, 1)})[0]
    want = model.scores(outline_deviation(acquisition, LAYOUT, regions))[None]
    np.testing.assert_allclose(served, want, rtol=1e-4, atol=2e-3)
