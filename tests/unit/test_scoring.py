"""Scoring a labelled stream into the tidy table calibration and evaluation read."""
from __future__ import annotations

import numpy as np
import pytest

from trainer.scoring import ScoredSet, labelled_stream, score_stream


def _chunk(start: int, n: int, size: int = 16) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    idx = np.arange(start, start + n)
    patches = np.broadcast_to((idx / 1000.0)[:, None, None, None], (n, size, size, 1)).astype(np.float32)
    meta = {"acquisition_id": np.array([f"a{i // 60}" for i in idx]), "product_id": np.array(["p"] * n),
            "run_index": idx // 60, "frame": (idx % 60) // 20, "vial": (idx % 20) // 4, "region": idx % 4,
            "patch_defective": np.zeros(n, bool), "acquisition_defective": np.zeros(n, bool)}
    return patches, meta


def test_chunks_of_any_size_are_scored_in_timed_batches_of_one_acquisition_in_order() -> None:
    calls: list[int] = []

    def scorer(patches: np.ndarray) -> np.ndarray:
        calls.append(patches.shape[0])
        return patches[:, 0, 0, 0] * 2.0

    stream = [_chunk(0, 25), _chunk(25, 70), _chunk(95, 30)]
    scored = score_stream(scorer, stream, batch=60, runtime="fake")
    assert calls == [60, 60, 5]
    assert np.allclose(scored.scores, np.arange(125) / 1000.0 * 2.0)
    assert scored.batch_sizes.tolist() == calls and scored.batch_seconds.size == 3
    assert scored.region.tolist()[:5] == [0, 1, 2, 3, 0]
    assert scored.mean_ms_per_patch() >= 0.0 and scored.runtime == "fake"


def test_nan_scores_stop_scoring_with_a_clear_message() -> None:
    with pytest.raises(ValueError, match="NaN"):
        score_stream(lambda p: np.full(p.shape[0], np.nan), [_chunk(0, 60)])


def test_missing_metadata_is_named() -> None:
    patches, meta = _chunk(0, 4)
    del meta["region"]
    with pytest.raises(ValueError, match="region"):
        score_stream(lambda p: np.zeros(p.shape[0]), [(patches, meta)])


def test_columns_must_have_one_row_per_patch() -> None:
    with pytest.raises(ValueError, match="vial"):
        ScoredSet.from_columns([0.1, 0.2], region=[0, 1], vial=[0], frame=[0, 0], acquisition_id=["a", "a"],
                               product_id=["p", "p"], run_index=[0, 0], patch_defective=[0, 0],
                               acquisition_defective=[0, 0])


def test_labelled_stream_keeps_only_the_inspected_camera_frames() -> None:
    n = 6
    meta = {"image_kind": np.array([b"frame", b"frame", b"frame", b"rank_min", b"frame", b"frame"]),
            "frame_index": np.array([0, 3, 7, -1, 15, 7]), "frame_slot": np.arange(n),
            "acquisition_id": np.array([b"a"] * n), "product_id": np.array([b"p"] * n),
            "run_index": np.zeros(n, int), "vial": np.zeros(n, int), "region": np.arange(n) % 4,
            "label": np.array([0, 0, 1, 0, 0, 0]), "acquisition_label": np.ones(n, int)}
    patches = np.arange(n, dtype=np.float32)[:, None, None, None] * np.ones((1, 4, 4, 1), np.float32)
    (out, cols), = list(labelled_stream([(patches, meta)], inspected_frames=(0, 7, 15)))
    assert out[:, 0, 0, 0].tolist() == [0, 2, 4, 5]
    assert cols["frame"].tolist() == [0, 1, 2, 1]
    assert cols["patch_defective"].tolist() == [False, True, False, False]
    assert cols["acquisition_id"].tolist() == ["a"] * 4
