"""The preprocessor's patching step: inspected frames on the wire -> the model's patches.

Decoding and cutting in one small function, so that the servicer and the
invariant-1 test (tests/integration/test_one_patching_path.py) run the very same
call: decode_inspected, then vialguard.patching at the patch size the served model
version asks for. At the recipe's native size the patches stay the camera's pixels
(cut_acquisition_pixels: uint8 for MONO8, one write per pixel, no float copy); the
served graph, or the client for an older float version, scales them with patching's
own division. A resampled profile gets float32 patches (cut_acquisition). The
service times decoding and cutting as two stages, hence ``decoded_at``.
"""
from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from preprocessor.decode import decode_inspected
from vialguard.patching import cut_acquisition, cut_acquisition_pixels, is_native
from vialguard.recipe import Recipe
from vialguard.v1 import inspection_pb2 as pb


@dataclass(frozen=True)
class CutAcquisition:
    patches: np.ndarray  # [frames * vials * regions, P, P, 1] serving patch order: pixels, or float32 in [0, 1]
    decoded_at: float    # time.perf_counter() when decoding ended and cutting began


def cut_inspected(frames: Sequence[pb.Frame], recipe: Recipe, patch_size: Callable[[], int | None]) -> CutAcquisition:
    """Decode the inspected frames and cut them; ``patch_size`` is asked only once decoding succeeded.

    Raises AcquisitionError (bad frames) or whatever ``patch_size`` raises (the
    inference server could not say which size it serves).
    """
    pixels = decode_inspected(frames, recipe)
    decoded_at = time.perf_counter()
    size = patch_size()
    if is_native(recipe, size):
        return CutAcquisition(cut_acquisition_pixels(pixels, recipe), decoded_at)
    return CutAcquisition(cut_acquisition(pixels, recipe, size), decoded_at)
