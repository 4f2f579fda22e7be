"""Inter-service messages round-trip; the heatmap is min-max normalised."""
from __future__ import annotations

import numpy as np

from vialguard.heatmap import heatmap, to_png_gray
from vialguard.messages import (
    PatchScore, PatchVerdict, RunPolicyState, ScoresMessage, VerdictMessage,
)


def test_scores_message_round_trips_through_redis_fields() -> None:
    msg = ScoresMessage("A1", "P1", 3, "bfs5-10ml", "inspector", 2, [PatchScore(0, 1, 2, 0.5)], {"inference_ms": 4.0})
    fields = {k.encode(): v.encode() for k, v in msg.to_fields().items()}
    assert ScoresMessage.from_fields(fields) == msg


def test_verdict_message_round_trips() -> None:
    v = VerdictMessage(
        "A1", "P1", 3, "REJECT", 0.5, 0.1, "inspector", 2, "run",
        [PatchVerdict(0, 1, 2, 0.5, 0.4, True)], RunPolicyState(7, 10, 1, 0, 1, "PENDING"),
    )
    assert VerdictMessage.from_json(v.to_json()) == v


def test_heatmap_is_normalised_per_patch() -> None:
    x = np.zeros((2, 8, 8, 1), np.float32)
    y = x.copy()
    y[0, 2, 2] = 0.5
    y[1] = 0.2  # uniform error: no structure, an all-zero map
    h = heatmap(x, y)
    assert h[0].max() == 1.0 and h[0].min() == 0.0
    assert np.all(h[1] == 0.0)


def test_heatmap_png_is_a_png() -> None:
    png = to_png_gray(np.linspace(0, 1, 64, dtype=np.float32).reshape(8, 8, 1))
    assert png[:8] == b"\x89PNG\r\n\x1a\n"


def test_a_pixel_patch_makes_the_same_png_as_its_float_patch() -> None:
    from vialguard.patching import to_unit_float

    pixels = np.random.default_rng(3).integers(0, 256, (256, 256, 1), dtype=np.uint8)
    assert to_png_gray(pixels) == to_png_gray(to_unit_float(pixels))
    wide = pixels.astype(np.uint16) * 257  # the same grey levels as MONO16
    assert to_png_gray(wide) == to_png_gray(pixels)
