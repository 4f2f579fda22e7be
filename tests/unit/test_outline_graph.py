"""trainer.onnx_outline_graph: the outline folded into a published graph's score, nothing else moved."""
from __future__ import annotations

import numpy as np
import onnxruntime as ort
import pytest

from tests.tiny_inspector import random_pixels, tiny_inspector_onnx
from trainer.onnx_outline_graph import NOT_MEASURED, fold_outline, outline_patch_scores_onnx
from vialguard.errors import ModelVersionError
from vialguard.inspector_io import INPUT_PATCHES, OUTPUTS, OUTPUT_SCORE
from vialguard.local_score import PatchLayout
from vialguard.outline import OutlineModel, outline_deviation

P = 64
LAYOUT = PatchLayout(3, 5, 4)


def _run(model: bytes, pixels: np.ndarray) -> dict[str, np.ndarray]:
    session = ort.InferenceSession(model, providers=["CPUExecutionProvider"])
    return dict(zip(OUTPUTS, session.run(list(OUTPUTS), {INPUT_PATCHES: pixels})))


def test_the_outline_raises_only_its_regions_scores_to_the_scaled_outline() -> None:
    rng = np.random.default_rng(0)
    model = OutlineModel((1,), rng.uniform(0, 0.1, (1, 2, P)), np.full((1, 2, P), 0.05), threshold=10.0)
    source = tiny_inspector_onnx(P, bit_depth=8)
    pixels = random_pixels(2 * LAYOUT.per_acquisition, P, seed=3)
    before = _run(source, pixels)
    unit = pixels.astype(np.float32) / 255
    z = np.stack([model.scores(outline_deviation(unit[a * 60:(a + 1) * 60], LAYOUT, (1,)))[:, 0]
                  for a in range(2)])                                                  # [A, V]
    # scaled to the tiny graph's scores, so that each side of the max wins somewhere
    scale = float(np.median(before[OUTPUT_SCORE].reshape(2, 3, 5, 4)[..., 1]) / np.median(z))
    folded = fold_outline(source, outline_patch_scores_onnx(model, LAYOUT, P, {1: scale}, 17))
    after = _run(folded, pixels)
    for name in OUTPUTS:
        if name != OUTPUT_SCORE:
            np.testing.assert_array_equal(after[name], before[name])
    want = before[OUTPUT_SCORE].reshape(2, 3, 5, 4).copy()
    want[:, :, :, 1] = np.maximum(want[:, :, :, 1], z[:, None, :] * scale)
    np.testing.assert_allclose(after[OUTPUT_SCORE], want.reshape(-1), rtol=1e-5, atol=1e-6)
    raised = after[OUTPUT_SCORE].reshape(2, 3, 5, 4)[:, :, :, 1] > before[OUTPUT_SCORE].reshape(2, 3, 5, 4)[:, :, :, 1]
    assert raised.any() and not raised.all()                      # the max really chooses, both ways
    others = [0, 2, 3]
    np.testing.assert_array_equal(after[OUTPUT_SCORE].reshape(2, 3, 5, 4)[..., others],
                                  before[OUTPUT_SCORE].reshape(2, 3, 5, 4)[..., others])
    assert NOT_MEASURED < -1e20


def test_a_float_input_graph_is_refused() -> None:
    model = OutlineModel((1,), np.zeros((1, 2, P)), np.ones((1, 2, P)), threshold=1.0)
    outline = outline_patch_scores_onnx(model, LAYOUT, P, {1: 1.0}, 17)
    with pytest.raises(ModelVersionError, match="pixel-input"):
        fold_outline(tiny_inspector_onnx(P), outline)
