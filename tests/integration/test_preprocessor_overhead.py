"""What the preprocessor itself costs per acquisition (decode + patching + Redis round trips).

Measured with the recording stand-in for Triton and a responder that answers
every queued acquisition at once, so what remains is the preprocessor's own
work plus one Redis hop each way. It must leave most of the 500 ms slot to
inference; the figures are printed (pytest -s) for the benchmark report.
"""
from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest

from preprocessor.encode import build_acquisition
from tests.integration.preprocessor_support import (  # noqa: F401 (fixtures)
    RECIPE, Responder, Stack, random_frames, redis_server, stack,
)
from tests.integration.redis_server import REDIS_SERVER
from vialguard.patching import select_inspected
from vialguard.v1 import inspection_pb2 as pb

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(not Path(REDIS_SERVER).exists(), reason="redis-server is not installed"),
]
SLOT_MS = 500.0
RUNS = 15


@pytest.mark.parametrize(
    ("name", "full", "encoding"),
    [("3 inspected frames, RAW", False, pb.RAW), ("16 frames, RAW", True, pb.RAW),
     ("3 inspected frames, PNG", False, pb.PNG)],
)
def test_preprocessor_overhead_leaves_the_slot_to_inference(stack: Stack, name: str, full: bool, encoding: int) -> None:
    frames = random_frames(seed=1)
    sent = frames if full else select_inspected(frames, RECIPE)
    indices = None if full else RECIPE.inspected_frames
    rows = []
    with Responder(stack.redis):
        for n in range(RUNS + 2):
            acq = build_acquisition(f"lat-{full}-{encoding}-{n}-{time.time_ns()}", "P-lat", 0, RECIPE.id, sent, indices,
                                    encoding=encoding)
            started = time.perf_counter()
            verdict = stack.stub.Inspect(acq, timeout=5)
            round_trip = (time.perf_counter() - started) * 1000
            t = verdict.timings
            own = t.total_ms - t.inference_ms
            rows.append((t.decode_ms, t.patching_ms, t.inference_ms, own - t.decode_ms - t.patching_ms, own,
                         t.total_ms, round_trip))
    p50 = np.median(np.array(rows[2:]), axis=0)  # the first two warm the connections
    labels = ("decode", "patching", "inference(stand-in)", "redis+reply", "own overhead", "total", "client RTT")
    print(f"\n[{name}, {acq.ByteSize() / 2**20:.1f} MiB] p50 ms: "
          + ", ".join(f"{k} {v:.1f}" for k, v in zip(labels, p50)))
    assert p50[4] < 0.5 * SLOT_MS, f"the preprocessor alone takes {p50[4]:.0f} ms of the {SLOT_MS:.0f} ms slot"
