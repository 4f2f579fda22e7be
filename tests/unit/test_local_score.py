"""The local score: numpy reference, its TensorFlow twin in the served graph, and what fusion keeps."""
from __future__ import annotations

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np
import pytest

from vialguard.errors import CalibrationError
from vialguard.local_score import (SCORE_LOCAL, SCORE_LOCAL_FUSED, LocalScoreModel, PatchLayout,
                                   StatisticsAccumulator, local_scores)

LAYOUT = PatchLayout(frames=3, vials=2, regions=4)  # 24 patches per acquisition
H = W = 12


def _good_maps(rng: np.random.Generator, acquisitions: int) -> np.ndarray:
    """1 - SSIM-like maps of good acquisitions: small noise, region-dependent level, a 'moving bubble'."""
    level = np.array([0.01, 0.02, 0.03, 0.04])
    maps = rng.uniform(0, 0.01, (acquisitions, LAYOUT.frames, LAYOUT.vials, LAYOUT.regions, H, W))
    maps += level[None, None, None, :, None, None]
    for a in range(acquisitions):  # a bubble in one frame only, at a random place
        f, v, r, y, x = rng.integers(0, [3, 2, 4, H - 2, W - 2])
        maps[a, f, v, r, y:y + 2, x:x + 2] += 0.5
    return maps.reshape(-1, H, W).astype(np.float32)


def _model(fuse: bool, seed: int = 0) -> LocalScoreModel:
    acc = StatisticsAccumulator(LAYOUT, fuse)
    acc.add(_good_maps(np.random.default_rng(seed), 40))
    return acc.model()


def test_layout_counts_and_refuses_partial_acquisitions() -> None:
    assert LAYOUT.per_frame == 8 and LAYOUT.per_acquisition == 24
    assert LAYOUT.check_count(48) == 2
    with pytest.raises(ValueError, match="whole acquisitions of 24"):
        LAYOUT.check_count(30)


def test_fusion_drops_what_moves_and_keeps_what_stays() -> None:
    """A dark spot in all three frames rises above good; the same spot in one frame (a bubble) does not."""
    rng = np.random.default_rng(1)
    fused, frame_by_frame = _model(True), _model(False)
    base = _good_maps(rng, 1).reshape(LAYOUT.frames, LAYOUT.vials, LAYOUT.regions, H, W)
    base[:] = np.clip(base, 0, 0.05)  # no bubble in this one
    stays, moves = base.copy(), base.copy()
    stays[:, 1, 2, 5:7, 5:7] += 0.3
    moves[0, 1, 2, 5:7, 5:7] += 0.3
    index = 1 * LAYOUT.regions + 2  # vial 1, region 2 within a frame
    s_stays = local_scores(stays.reshape(-1, H, W), fused).reshape(LAYOUT.frames, -1)
    s_moves = local_scores(moves.reshape(-1, H, W), fused).reshape(LAYOUT.frames, -1)
    s_base = local_scores(base.reshape(-1, H, W), fused).reshape(LAYOUT.frames, -1)
    assert np.all(s_stays[:, index] == s_stays[0, index])  # the fused score is given to each frame's patch
    assert s_stays[0, index] > s_base[0, index] + 5
    assert s_moves[0, index] < s_base[0, index] + 1
    # frame by frame, the moving spot is seen in its frame
    per_frame = local_scores(moves.reshape(-1, H, W), frame_by_frame).reshape(LAYOUT.frames, -1)
    assert per_frame[0, index] > per_frame[1, index] + 5


def test_statistics_normalise_each_region_to_its_own_level() -> None:
    model = _model(False)
    assert model.kind == SCORE_LOCAL and _model(True).kind == SCORE_LOCAL_FUSED
    assert model.mean.shape == (LAYOUT.regions, H, W)
    np.testing.assert_allclose(model.mean.mean(axis=(1, 2)), [0.015, 0.025, 0.035, 0.045], atol=0.01)
    assert (model.scale > 0).all()
    scores = local_scores(_good_maps(np.random.default_rng(5), 20), model).reshape(20, LAYOUT.frames, 2, 4)
    medians = np.median(scores, axis=(0, 1, 2))
    assert np.ptp(medians) < 1.5  # regions with other raw levels land at comparable scores


def test_model_round_trips_through_bytes_and_refuses_bad_statistics() -> None:
    model = _model(True)
    back = LocalScoreModel.from_bytes(model.to_bytes())
    assert back.layout == model.layout and back.fuse_frames
    np.testing.assert_array_equal(back.mean, model.mean)
    np.testing.assert_array_equal(back.scale, model.scale)
    with pytest.raises(CalibrationError, match="positive scale"):
        LocalScoreModel(LAYOUT, True, model.mean, np.zeros_like(model.scale))
    with pytest.raises(CalibrationError, match="unreadable"):
        LocalScoreModel.from_bytes(b"not an npz")
    with pytest.raises(CalibrationError, match="good acquisitions"):
        StatisticsAccumulator(LAYOUT, True).model()


@pytest.mark.parametrize("fuse", [True, False])
def test_tensorflow_local_score_equals_the_numpy_reference(fuse: bool) -> None:
    import tensorflow as tf

    from trainer.local_score_tf import local_score_tf

    model = _model(fuse)
    maps = _good_maps(np.random.default_rng(9), 3)
    maps[5, 3:6, 3:6] += 0.4
    served = local_score_tf(tf.constant(maps), model).numpy()
    np.testing.assert_allclose(served, local_scores(maps, model), rtol=1e-5, atol=1e-5)


def test_smoothing_and_neighbourhood_statistics_match_between_numpy_and_tensorflow() -> None:
    import tensorflow as tf

    from trainer.local_score_tf import local_score_tf
    from vialguard.local_score import smooth

    acc = StatisticsAccumulator(LAYOUT, True, smooth_sigma=1.5)
    acc.add(_good_maps(np.random.default_rng(2), 30))
    model = acc.model(dilate=3)
    assert model.smooth_sigma == 1.5
    back = LocalScoreModel.from_bytes(model.to_bytes())
    assert back.smooth_sigma == 1.5
    maps = _good_maps(np.random.default_rng(3), 2)
    np.testing.assert_allclose(local_score_tf(tf.constant(maps), model).numpy(), local_scores(maps, model),
                               rtol=1e-4, atol=1e-4)
    flat = np.ones((1, 9, 9), np.float32)
    smoothed = smooth(flat, 1.0)
    assert smoothed[0, 4, 4] == pytest.approx(1.0, abs=1e-5) and smoothed[0, 0, 0] < 0.9  # zero-padded edges
    # a neighbourhood's maximum: the scale next to a single high-variance pixel is raised too
    single = StatisticsAccumulator(PatchLayout(1, 1, 1), False)
    rng = np.random.default_rng(4)
    samples = rng.normal(0, 0.01, (50, 9, 9)).astype(np.float32)
    samples[:, 4, 4] += rng.normal(0, 0.5, 50).astype(np.float32)
    single.add(samples)
    assert single.model(dilate=3).scale[0, 3, 3] > 5 * single.model(dilate=1).scale[0, 3, 3]


@pytest.mark.parametrize("group", [1, 2, 4])
def test_grouped_smoothing_is_the_reference_smoothing_map_for_map(group: int) -> None:
    """The served graph smooths `group` maps at a time as channels: same numbers, same places."""
    import tensorflow as tf

    from trainer.local_score_tf import smooth_tf
    from vialguard.local_score import smooth

    rng = np.random.default_rng(group)
    maps = rng.random((8, 13, 11)).astype(np.float32)
    maps[3, 6, 5] = 25.0                                           # one spike, in one map only
    grouped = smooth_tf(tf.constant(maps), 1.5, group).numpy()
    np.testing.assert_allclose(grouped, smooth(maps, 1.5), atol=1e-5)
    np.testing.assert_allclose(grouped, smooth_tf(tf.constant(maps), 1.5).numpy(), atol=1e-6)
    assert np.argmax(grouped.max(axis=(1, 2))) == 3


def _passing_object(shift: int) -> np.ndarray:
    """One acquisition whose vial 0 / region 0 shows a 2 px spot that moves ``shift`` px per frame."""
    maps = np.zeros((LAYOUT.frames, LAYOUT.vials, LAYOUT.regions, H, W), np.float32)
    for f in range(LAYOUT.frames):
        maps[f, 0, 0, 5, 2 + shift * f:4 + shift * f] = 1.0
    return maps.reshape(-1, H, W)


def test_smoothing_after_the_fusion_drops_what_only_passes_near_a_pixel() -> None:
    """Smoothed first, an object that moves 2 px per frame still overlaps itself and survives the
    minimum (the bubbles of the liquid); smoothed after, only what stays on its pixel does."""
    flat = np.full((LAYOUT.regions, H, W), 0.0, np.float32)
    before = LocalScoreModel(LAYOUT, True, flat, np.ones_like(flat), 1.5)
    after = LocalScoreModel(LAYOUT, True, flat, np.ones_like(flat), 1.5, smooth_after_fusion=True)
    moving, staying = _passing_object(2), _passing_object(0)
    assert local_scores(moving, before).max() > 0.02
    assert local_scores(moving, after).max() == 0.0
    assert local_scores(staying, after).max() > 0.1
    assert LocalScoreModel.from_bytes(after.to_bytes()).smooth_after_fusion
    assert not LocalScoreModel.from_bytes(before.to_bytes()).smooth_after_fusion


def test_tensorflow_smooths_after_the_fusion_as_the_reference() -> None:
    import tensorflow as tf

    from trainer.local_score_tf import local_score_tf

    acc = StatisticsAccumulator(LAYOUT, True, smooth_sigma=1.5, smooth_after_fusion=True)
    acc.add(_good_maps(np.random.default_rng(5), 30))
    model = acc.model(floor_quantile=0.99, dilate=3)
    assert model.smooth_after_fusion
    maps = np.concatenate([_good_maps(np.random.default_rng(6), 2), _passing_object(0)])
    np.testing.assert_allclose(local_score_tf(tf.constant(maps), model).numpy(), local_scores(maps, model),
                               rtol=1e-4, atol=1e-4)


def _maps_with_a_busy_row(rng: np.random.Generator, acquisitions: int, busy_row: int, width: int = W) -> np.ndarray:
    """Good maps where, in one row of R2, a rare large value turns up at a random column (what three
    bubbles of three frames leave on the strip map under the meniscus); elsewhere small noise."""
    maps = rng.uniform(0, 0.001, (acquisitions, 1, LAYOUT.vials, LAYOUT.regions, H, width)).astype(np.float32)
    for a in range(acquisitions):
        if a % 4 == 0:
            maps[a, 0, int(rng.integers(0, LAYOUT.vials)), 2, busy_row, int(rng.integers(0, width))] = 0.2
    return np.repeat(maps, LAYOUT.frames, axis=1).reshape(-1, H, width)


def test_the_row_tail_is_the_quantile_of_every_good_value_in_the_row() -> None:
    rng = np.random.default_rng(21)
    maps = _maps_with_a_busy_row(rng, 200, busy_row=3)
    acc = StatisticsAccumulator(LAYOUT, True)
    for a in range(0, 200, 7):  # streamed in uneven pieces: the kept largest values must merge right
        acc.add(maps[a * LAYOUT.per_acquisition:min(a + 7, 200) * LAYOUT.per_acquisition])
    model = acc.model(floor_quantile=0.5, row_quantile=0.99, row_floor=1e-5)
    fused = maps.reshape(200, LAYOUT.frames, LAYOUT.vials, LAYOUT.regions, H, W).min(axis=1)
    want = np.quantile(fused.transpose(2, 3, 0, 1, 4).reshape(LAYOUT.regions, H, -1).astype(np.float64), 0.99,
                       axis=-1)
    np.testing.assert_allclose(model.row_scale, np.maximum(want, 1e-5), rtol=1e-5)
    assert model.row_scale[2, 3] > 20 * model.row_scale[2, 2]  # the busy row's tail
    assert LocalScoreModel.from_bytes(model.to_bytes()).row_scale is not None
    assert acc.model().row_scale is None and LocalScoreModel.from_bytes(acc.model().to_bytes()).row_scale is None


def test_a_row_that_is_often_busy_no_longer_hides_a_defect_in_a_quiet_row() -> None:
    """Without the row tail the rare large values of the busy row, each at a pixel the per-pixel
    spread hardly saw (96 columns: most pixels of the row never had one), score higher than a real
    defect in a quiet row; with it the defect stands out."""
    wide = 96
    rng = np.random.default_rng(22)
    acc = StatisticsAccumulator(LAYOUT, True)
    acc.add(_maps_with_a_busy_row(rng, 300, busy_row=3, width=wide))
    plain, tailed = acc.model(floor_quantile=0.5), acc.model(floor_quantile=0.5, row_quantile=0.999, row_floor=1e-4)
    good = _maps_with_a_busy_row(np.random.default_rng(23), 40, busy_row=3, width=wide)
    quiet = np.random.default_rng(24).uniform(0, 0.001, (LAYOUT.vials, LAYOUT.regions, H, wide)).astype(np.float32)
    defect = np.repeat(quiet[None], LAYOUT.frames, axis=0)  # an acquisition without a busy-row event
    defect[:, 1, 2, 8, 4:6] = 0.03  # a faint persistent mark in a quiet row of R2
    defect = defect.reshape(-1, H, wide)

    def worst(model: LocalScoreModel, maps: np.ndarray) -> float:
        return float(local_scores(maps, model).reshape(-1, LAYOUT.frames, LAYOUT.vials, LAYOUT.regions)[..., 2].max())

    assert worst(plain, defect) < worst(plain, good)    # hidden among the busy row's good values
    assert worst(tailed, defect) > 3 * worst(tailed, good)


def test_tensorflow_divides_by_the_row_tail_as_the_reference() -> None:
    import tensorflow as tf

    from trainer.local_score_tf import local_score_tf

    acc = StatisticsAccumulator(LAYOUT, True, smooth_sigma=1.5, smooth_after_fusion=True)
    acc.add(_maps_with_a_busy_row(np.random.default_rng(25), 60, busy_row=5))
    model = acc.model(floor_quantile=0.99, dilate=3, row_quantile=0.99, row_floor=1e-4)
    assert model.row_scale is not None
    maps = np.concatenate([_maps_with_a_busy_row(np.random.default_rng(26), 2, busy_row=5), _passing_object(0)])
    np.testing.assert_allclose(local_score_tf(tf.constant(maps), model).numpy(), local_scores(maps, model),
                               rtol=1e-4, atol=1e-4)
    with pytest.raises(CalibrationError, match="row scales"):
        LocalScoreModel(LAYOUT, True, model.mean, model.scale, row_scale=np.zeros((LAYOUT.regions, H), np.float32))


def test_the_score_unit_reads_a_score_difference_as_a_difference_of_the_map() -> None:
    model = _model(True)
    assert model.score_unit == pytest.approx(float(model.scale.max()))
    rows = np.full((LAYOUT.regions, H), 0.5, np.float32)
    rows[2, 4] = 3.0
    tailed = LocalScoreModel(LAYOUT, True, model.mean, model.scale, row_scale=rows)
    assert tailed.score_unit == pytest.approx(float((model.scale * rows[..., None]).max()))
