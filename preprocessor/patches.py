"""The preprocessor's patching step: inspected frames on the wire -> the model's patches.

Decoding and cutting in one small function, so that the servicer and the
invariant-1 test (tests/integration/test_one_patching_path.py) run the very same
call: decode_inspected, then vialguard.patching.cut_acquisition at the patch size
the served model version asks for. The service times decoding and cutting as two
stages, hence ``decoded_at``.
"""
from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from preprocessor.decode import decode_inspected
from vialguard.patching import cut_acquisition
from vialguard.recipe import Recipe
from vialguard.v1 import inspection_pb2 as pb


@dataclass(frozen=True)
class CutAcquisition:
    patches: np.ndarray  # float32 [frames * vials * regions, P, P, 1] in [0, 1], serving patch order
    decoded_at: float    # time.perf_counter() when decoding ended and cutting began


def cut_inspected(frames: Sequence[pb.Frame], recipe: Recipe, patch_size: Callable[[], int | None]) -> CutAcquisition:
    """Decode the inspected frames and cut them; ``patch_size`` is asked only once decoding succeeded.

    Raises AcquisitionError (bad frames) or whatever ``patch_size`` raises (the
    inference server could not say which size it serves).
    """
    pixels = decode_inspected(frames, recipe)
    decoded_at = time.perf_counter()
    return CutAcquisition(cut_acquisition(pixels, recipe, patch_size()), decoded_at)
