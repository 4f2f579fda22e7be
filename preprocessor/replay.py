"""The digest that ties an acquisition_id to the strip it was first sent for.

Idempotency on acquisition_id is only safe if a repeat is the same acquisition:
a camera that reuses an id for another strip (a counter reset, a copy-paste
integration) must not silently get the first strip's verdict. The digest
covers what decides a verdict: product, run, and every inspected frame's
header and bytes (the frames that are not inspected do not change a verdict).
SHA-256 over the three inspected frames of the shipped recipe (about 4 MB raw)
costs a few milliseconds.
"""
from __future__ import annotations

import hashlib
from collections.abc import Sequence

from vialguard.v1 import inspection_pb2 as pb


def frames_digest(acquisition: pb.Acquisition, inspected: Sequence[pb.Frame]) -> str:
    h = hashlib.sha256()
    h.update(f"{acquisition.product_id}\0{acquisition.run_index}\0{acquisition.recipe_id}\0".encode())
    for frame in inspected:
        h.update(f"{frame.index}:{frame.width}x{frame.height}:{frame.pixel_format}:{frame.encoding}:"
                 f"{len(frame.data)}\0".encode())
        h.update(frame.data)
    return "sha256:" + h.hexdigest()
