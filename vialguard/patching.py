"""The one patching code path (DESIGN invariant 1).

The trainer, the simulator's labels and the preprocessor all cut patches here,
from the same recipe. Patch order is fixed and documented:

    index = (frame_slot * n_vials + vial) * n_regions + region

where frame_slot is the position of the frame among the inspected frames (0, 1, 2
for the 1st, 8th and 16th frame). With the 5-vial recipe: 20 patches per frame,
60 per acquisition. Pixel values are scaled to float32 in [0, 1]: MONO8 by 255,
MONO16 by 65535.

At the recipe's native size the float patches are the raw pixel patches scaled
(``cut_acquisition`` = ``to_unit_float(cut_acquisition_pixels)``, bit for bit), so
the preprocessor can send the camera's 8/16-bit pixels and let the served graph
scale them with the same division (vialguard.inspector_io.PIXEL_SCALE).
"""
from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from vialguard.errors import AcquisitionError
from vialguard.inspector_io import PIXEL_SCALE
from vialguard.recipe import Recipe


@dataclass(frozen=True)
class PatchLabel:
    """Where a patch comes from: frame slot, vial index and region index."""

    frame: int
    vial: int
    region: int

    @property
    def region_id(self) -> str:
        return f"R{self.region}"


def to_unit_float(image: np.ndarray) -> np.ndarray:
    """Scale a MONO8/MONO16 (or already float) image to float32 in [0, 1]."""
    if image.dtype == np.uint8:
        return image.astype(np.float32) / np.float32(PIXEL_SCALE[8])
    if image.dtype == np.uint16:
        return image.astype(np.float32) / np.float32(PIXEL_SCALE[16])
    if image.dtype in (np.float32, np.float64):
        return np.clip(image, 0.0, 1.0).astype(np.float32)
    raise AcquisitionError(f"unsupported pixel type {image.dtype}; expected MONO8, MONO16 or float in [0, 1]")


def _check_frame(frame: np.ndarray, recipe: Recipe) -> None:
    if frame.ndim != 2:
        raise AcquisitionError(f"a frame must be a single-channel 2-D image, got shape {frame.shape}")
    if frame.shape != (recipe.frame_height, recipe.frame_width):
        raise AcquisitionError(
            f"frame is {frame.shape[1]}x{frame.shape[0]} but recipe '{recipe.id}' expects "
            f"{recipe.frame_width}x{recipe.frame_height}"
        )


def frame_labels(recipe: Recipe, frame_slot: int = 0) -> list[PatchLabel]:
    """Labels of the patches of one frame, in patch order."""
    return [
        PatchLabel(frame_slot, v, r) for v in range(len(recipe.vials)) for r in range(len(recipe.regions))
    ]


def acquisition_labels(recipe: Recipe) -> list[PatchLabel]:
    """Labels of the patches of one acquisition (all inspected frames), in patch order."""
    return [label for slot in range(len(recipe.inspected_frames)) for label in frame_labels(recipe, slot)]


def is_native(recipe: Recipe, patch_size: int | None = None) -> bool:
    """Whether every region is already ``patch_size`` square: patches are then plain crops, no resampling."""
    size = patch_size or recipe.patch_size
    return all(r.rect.width == size and r.rect.height == size for r in recipe.regions)


def cut_frame_pixels(frame: np.ndarray, recipe: Recipe, out: np.ndarray | None = None) -> np.ndarray:
    """Cut one frame into its native-size patches, pixels as they are: [vials * regions, P, P, 1], frame dtype.

    No scaling and no resampling: what a version with an integer input takes. ``out``
    (that shape and dtype) is written in place, so a caller can cut straight into the
    buffer it sends (one write per pixel). Raises AcquisitionError when the recipe's
    regions are not all ``patch_size`` square.
    """
    _check_frame(frame, recipe)
    if not is_native(recipe):
        raise AcquisitionError(f"recipe '{recipe.id}' has regions that are not {recipe.patch_size} px square; "
                               f"its patches are resampled and cannot be sent as raw pixels")
    size = recipe.patch_size
    shape = (recipe.patches_per_frame, size, size, 1)
    if out is None:
        out = np.empty(shape, dtype=frame.dtype)
    elif out.shape != shape or out.dtype != frame.dtype:
        raise ValueError(f"out must be {shape} {frame.dtype}, got {out.shape} {out.dtype}")
    for i, (v, r) in enumerate((v, r) for v in range(len(recipe.vials)) for r in range(len(recipe.regions))):
        rect = recipe.region_rect(v, r)
        out[i, :, :, 0] = frame[rect.y : rect.y + rect.height, rect.x : rect.x + rect.width]
    return out


def cut_frame(frame: np.ndarray, recipe: Recipe, patch_size: int | None = None) -> np.ndarray:
    """Cut one frame into its patches: float32 [vials * regions, P, P, 1] in [0, 1].

    ``patch_size`` defaults to the recipe's; a model profile with a smaller input
    (the ``cpu`` profile) passes its own, and the region is resized with area
    interpolation, the same way for training and serving. At the native size this
    is ``to_unit_float(cut_frame_pixels(frame))``: scaling is per pixel, so cropping
    first and scaling after gives the same bits.
    """
    _check_frame(frame, recipe)
    size = patch_size or recipe.patch_size
    if is_native(recipe, size):
        return to_unit_float(cut_frame_pixels(frame, recipe))
    unit = to_unit_float(frame)
    out = np.empty((recipe.patches_per_frame, size, size, 1), dtype=np.float32)
    i = 0
    for v in range(len(recipe.vials)):
        for r in range(len(recipe.regions)):
            rect = recipe.region_rect(v, r)
            crop = unit[rect.y : rect.y + rect.height, rect.x : rect.x + rect.width]
            if crop.shape != (size, size):
                crop = cv2.resize(crop, (size, size), interpolation=cv2.INTER_AREA)
            out[i, :, :, 0] = crop
            i += 1
    return out


def frame_indices(count: int, recipe: Recipe) -> tuple[int, ...]:
    """Sequence indices of an acquisition's frames: all of them, or only the inspected ones."""
    if count == recipe.frames_per_acquisition:
        return tuple(range(count))
    if count == len(recipe.inspected_frames):
        return tuple(recipe.inspected_frames)
    raise AcquisitionError(
        f"an acquisition has {recipe.frames_per_acquisition} frames in recipe '{recipe.id}' (or only the "
        f"{len(recipe.inspected_frames)} inspected ones), got {count}"
    )


def select_inspected(frames: np.ndarray | list[np.ndarray], recipe: Recipe) -> list[np.ndarray]:
    """Pick the inspected frames (1st, 8th, 16th) from a full acquisition (or take them as they are)."""
    indices = frame_indices(len(frames), recipe)
    return [np.asarray(frames[indices.index(i)]) for i in recipe.inspected_frames]


def cut_acquisition(
    inspected_frames: list[np.ndarray], recipe: Recipe, patch_size: int | None = None
) -> np.ndarray:
    """Cut the inspected frames of an acquisition: [frames * vials * regions, P, P, 1].

    ``inspected_frames`` are the frames the recipe inspects, in order (see
    :func:`select_inspected` for a full 16-frame acquisition).
    """
    if len(inspected_frames) != len(recipe.inspected_frames):
        raise AcquisitionError(
            f"recipe '{recipe.id}' inspects {len(recipe.inspected_frames)} frames, got {len(inspected_frames)}"
        )
    return np.concatenate([cut_frame(f, recipe, patch_size) for f in inspected_frames], axis=0)


def cut_acquisition_pixels(
    inspected_frames: list[np.ndarray], recipe: Recipe, out: np.ndarray | None = None
) -> np.ndarray:
    """The inspected frames' native-size patches as raw pixels, written once into one array.

    [frames * vials * regions, P, P, 1] in the frames' dtype (uint8 for MONO8):
    ``to_unit_float`` of it is ``cut_acquisition`` bit for bit. One write per pixel,
    no float copy: a quarter of the float patches' bytes for MONO8. ``out`` (for
    example a view of a shared-memory region) is written in place.
    """
    if len(inspected_frames) != len(recipe.inspected_frames):
        raise AcquisitionError(
            f"recipe '{recipe.id}' inspects {len(recipe.inspected_frames)} frames, got {len(inspected_frames)}"
        )
    dtypes = {np.asarray(f).dtype for f in inspected_frames}
    if len(dtypes) != 1:
        raise AcquisitionError(f"the inspected frames mix pixel types {sorted(str(d) for d in dtypes)}")
    per_frame = recipe.patches_per_frame
    shape = (len(inspected_frames) * per_frame, recipe.patch_size, recipe.patch_size, 1)
    dtype = dtypes.pop()
    if out is None:
        out = np.empty(shape, dtype)
    elif out.shape != shape or out.dtype != dtype:
        raise ValueError(f"out must be {shape} {dtype}, got {out.shape} {out.dtype}")
    for k, frame in enumerate(inspected_frames):
        cut_frame_pixels(np.asarray(frame), recipe, out[k * per_frame : (k + 1) * per_frame])
    return out


def rank_images(frames: np.ndarray | list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Per-pixel minimum and maximum over all frames of an acquisition (rank 1 and rank A).

    What moved during handling (bubbles, drops) is absent from one of the two and
    present in the other; a stuck particle stays in both.
    """
    stack = np.stack([np.asarray(f) for f in frames], axis=0)
    if stack.ndim != 3:
        raise AcquisitionError(f"rank images need a stack of 2-D frames, got shape {stack.shape}")
    return stack.min(axis=0), stack.max(axis=0)
