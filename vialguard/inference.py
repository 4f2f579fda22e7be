"""The contract between the preprocessor and whatever runs the `inspector` model.

On the line that is Triton (preprocessor/inspector_client.py, over KServe v2 gRPC);
in unit tests a fake. The version that answered is part of the result, read from
the server's response, because the aggregator must apply that version's thresholds.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import numpy as np


class InferenceUnavailable(Exception):
    """The inference server cannot answer now (down, not ready, deadline exceeded)."""


class InferenceTimeout(InferenceUnavailable):
    """The inference server was reachable but did not finish before the deadline.

    Kept apart from an outage so the camera is told DEADLINE_EXCEEDED (slow), not
    UNAVAILABLE (down): a line engineer would otherwise chase an outage that is not there.
    """


class InferenceOverloaded(InferenceUnavailable):
    """The inference server refused the request at once because its queue is full.

    Load, not an outage: the preprocessor sheds the acquisition with RESOURCE_EXHAUSTED
    instead of retrying, which would only lengthen the queue.
    """


@dataclass(frozen=True)
class InferenceResult:
    scores: np.ndarray     # float32 [N]: the score the decision uses
    heatmaps: np.ndarray | None  # float32 [N, P, P, 1] when asked for, else None (fetched apart for rejects)
    model_name: str
    model_version: int
    phi: np.ndarray | None = None  # float32 [N]: the paper's phi, kept for the audit beside the score


class Inspector(Protocol):
    """Runs the inspector graph on one acquisition's patches."""

    def patch_size(self) -> int:
        """Side of the square patches the served model expects."""
        ...

    def infer(self, patches: np.ndarray, timeout_s: float, heatmaps: bool = False) -> InferenceResult:
        """Score patches [N, P, P, 1]: camera pixels (uint8/uint16) or float32 in [0, 1].

        Raises InferenceUnavailable on failure. ``heatmaps`` asks for them in the same call.
        """
        ...

    def heatmaps_apart(self) -> bool:
        """Whether the served version answers heatmaps of a few patches (else ask for them in ``infer``)."""
        ...

    def heatmaps(self, patches: np.ndarray, model_version: int, timeout_s: float) -> np.ndarray:
        """Heatmaps [N, P, P, 1] float32 of patches, from exactly ``model_version`` (the one that scored)."""
        ...
