"""The camera's side of decode.py: numpy frames -> a gRPC ``Acquisition``.

For the simulated camera, command-line tools and tests, so that every client
builds acquisitions the way the server expects to read them.
"""
from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np

from vialguard.v1 import inspection_pb2 as pb


def encode_frame(image: np.ndarray, index: int, encoding: int = pb.RAW, camera_timestamp_ns: int = 0) -> pb.Frame:
    """A uint8 (MONO8) or uint16 (MONO16) image [H, W] as a Frame, RAW (little-endian) or PNG."""
    if image.ndim != 2 or image.dtype not in (np.uint8, np.uint16):
        raise ValueError(f"a frame must be a 2-D uint8 or uint16 image, got {image.dtype} {image.shape}")
    pixel_format = pb.MONO8 if image.dtype == np.uint8 else pb.MONO16
    if encoding == pb.PNG:
        ok, buf = cv2.imencode(".png", image)
        if not ok:
            raise ValueError("PNG encoding failed")
        data = buf.tobytes()
    else:
        data = np.ascontiguousarray(image, dtype=image.dtype.newbyteorder("<")).tobytes()
    return pb.Frame(index=index, width=image.shape[1], height=image.shape[0], pixel_format=pixel_format,
                    encoding=encoding, data=data, camera_timestamp_ns=camera_timestamp_ns)


def build_acquisition(
    acquisition_id: str,
    product_id: str,
    run_index: int,
    recipe_id: str,
    frames: Sequence[np.ndarray],
    indices: Sequence[int] | None = None,
    encoding: int = pb.RAW,
    acquired_at_unix_ms: int = 0,
    camera_timestamp_ns: int = 0,
) -> pb.Acquisition:
    """An Acquisition of ``frames`` at sequence positions ``indices`` (default 0, 1, 2, ...).

    ``camera_timestamp_ns`` stamps every frame: the service takes the earliest
    stamp as the acquisition's start, so a camera that sets it gets end-to-end times.
    """
    positions = list(indices) if indices is not None else list(range(len(frames)))
    if len(positions) != len(frames):
        raise ValueError(f"{len(frames)} frames but {len(positions)} indices")
    return pb.Acquisition(
        acquisition_id=acquisition_id, product_id=product_id, run_index=run_index, recipe_id=recipe_id,
        frames=[encode_frame(f, i, encoding, camera_timestamp_ns) for f, i in zip(frames, positions)],
        acquired_at_unix_ms=acquired_at_unix_ms,
    )
