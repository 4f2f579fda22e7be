"""Camera frames (gRPC ``Frame`` messages) -> the inspected frames as numpy arrays.

Every check a camera integration can get wrong is made here, before any pixel
reaches the patching code, and each failure is an AcquisitionError whose
message names the frame and the field, so a line engineer can fix the camera
configuration from the message alone. Only the inspected frames are decoded:
the others are checked for what is cheap to check (index, declared size and
format) and then left alone, which keeps PNG decoding off the slot budget.
"""
from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np

from vialguard.errors import AcquisitionError
from vialguard.recipe import Recipe
from vialguard.v1 import inspection_pb2 as pb

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
PNG_GRAY = 0  # IHDR colour type of a single-channel image
_BITS = {pb.MONO8: 8, pb.MONO16: 16}
_DTYPE = {pb.MONO8: np.dtype(np.uint8), pb.MONO16: np.dtype("<u2")}


def _format_name(pixel_format: int) -> str:
    return pb.PixelFormat.Name(pixel_format) if pixel_format in pb.PixelFormat.values() else str(pixel_format)


def _expected_format(recipe: Recipe) -> int:
    return pb.MONO8 if recipe.bit_depth == 8 else pb.MONO16


def check_frame_header(frame: pb.Frame, recipe: Recipe) -> None:
    """Declared index, size, pixel format and encoding against the recipe."""
    where = f"frame {frame.index}"
    if frame.index >= recipe.frames_per_acquisition:
        raise AcquisitionError(
            f"{where}: index out of range; recipe '{recipe.id}' has frames 0..{recipe.frames_per_acquisition - 1}"
        )
    if (frame.width, frame.height) != (recipe.frame_width, recipe.frame_height):
        raise AcquisitionError(
            f"{where}: declared {frame.width}x{frame.height} but recipe '{recipe.id}' expects "
            f"{recipe.frame_width}x{recipe.frame_height} (check the camera's ROI settings)"
        )
    expected = _expected_format(recipe)
    if frame.pixel_format not in _BITS:
        raise AcquisitionError(f"{where}: pixel_format not set; recipe '{recipe.id}' expects {_format_name(expected)}")
    if frame.pixel_format != expected:
        raise AcquisitionError(
            f"{where}: pixel format {_format_name(frame.pixel_format)} but recipe '{recipe.id}' is "
            f"{recipe.bit_depth}-bit and expects {_format_name(expected)} (check the camera's pixel format)"
        )
    if frame.encoding not in (pb.RAW, pb.PNG):
        raise AcquisitionError(f"{where}: encoding not set; use RAW or PNG")


def _decode_raw(frame: pb.Frame) -> np.ndarray:
    dtype = _DTYPE[frame.pixel_format]
    expected = frame.width * frame.height * dtype.itemsize
    if len(frame.data) != expected:
        raise AcquisitionError(
            f"frame {frame.index}: RAW {_format_name(frame.pixel_format)} data is {len(frame.data)} bytes, "
            f"expected {frame.width}x{frame.height}x{dtype.itemsize} = {expected} (truncated or wrong format?)"
        )
    pixels = np.frombuffer(frame.data, dtype=dtype).reshape(frame.height, frame.width)
    return pixels.astype(dtype.newbyteorder("="), copy=False)


def _png_header(frame: pb.Frame) -> tuple[int, int, int, int]:
    """(width, height, bit depth, colour type) from the IHDR chunk, read before decoding.

    Reading the header first refuses a PNG that claims an enormous size before
    OpenCV allocates it, and lets the message say what the PNG actually is.
    """
    data = frame.data
    if len(data) < 26 or data[:8] != PNG_SIGNATURE or data[12:16] != b"IHDR":
        raise AcquisitionError(f"frame {frame.index}: encoding is PNG but the data is not a PNG file")
    width = int.from_bytes(data[16:20], "big")
    height = int.from_bytes(data[20:24], "big")
    return width, height, data[24], data[25]


def _decode_png(frame: pb.Frame) -> np.ndarray:
    where = f"frame {frame.index}"
    width, height, bits, colour = _png_header(frame)
    if (width, height) != (frame.width, frame.height):
        raise AcquisitionError(f"{where}: the PNG is {width}x{height} but the frame declares {frame.width}x{frame.height}")
    if colour != PNG_GRAY:
        raise AcquisitionError(f"{where}: the PNG is not single-channel grayscale (colour type {colour})")
    expected_bits = _BITS[frame.pixel_format]
    if bits != expected_bits:
        raise AcquisitionError(
            f"{where}: the PNG has {bits}-bit pixels but the frame declares {_format_name(frame.pixel_format)} "
            f"({expected_bits}-bit)"
        )
    image = cv2.imdecode(np.frombuffer(frame.data, np.uint8), cv2.IMREAD_UNCHANGED)
    if image is None or image.shape != (height, width) or image.dtype != _DTYPE[frame.pixel_format]:
        raise AcquisitionError(f"{where}: the PNG data is corrupt or truncated and could not be decoded")
    return image


def decode_frame(frame: pb.Frame, recipe: Recipe) -> np.ndarray:
    """One frame -> uint8/uint16 array [height, width], after checking it against the recipe."""
    check_frame_header(frame, recipe)
    return _decode_raw(frame) if frame.encoding == pb.RAW else _decode_png(frame)


def inspected_frames(frames: Sequence[pb.Frame], recipe: Recipe) -> list[pb.Frame]:
    """The frames the recipe inspects, in the recipe's order, after checking the whole set.

    A camera may send every frame of the sequence or only the inspected ones;
    either way each index appears once and every inspected index is present.
    """
    if not frames:
        raise AcquisitionError(f"the acquisition has no frames; recipe '{recipe.id}' inspects frames "
                               f"{list(recipe.inspected_frames)}")
    by_index: dict[int, pb.Frame] = {}
    for frame in frames:
        check_frame_header(frame, recipe)
        if frame.index in by_index:
            raise AcquisitionError(f"frame {frame.index} is sent twice; each index of the sequence must appear once")
        by_index[frame.index] = frame
    missing = [i for i in recipe.inspected_frames if i not in by_index]
    if missing:
        raise AcquisitionError(
            f"inspected frame(s) {missing} missing; recipe '{recipe.id}' inspects frames "
            f"{list(recipe.inspected_frames)} (0-based), the acquisition has {sorted(by_index)}"
        )
    return [by_index[i] for i in recipe.inspected_frames]


def decode_inspected(frames: Sequence[pb.Frame], recipe: Recipe) -> list[np.ndarray]:
    """Check every frame, decode the inspected ones: ready for vialguard.patching.cut_acquisition."""
    return [decode_frame(frame, recipe) for frame in inspected_frames(frames, recipe)]
