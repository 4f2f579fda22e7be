"""Import a line's own acquisitions from a plain folder layout into the dataset format.

The layout a line engineer has after saving acquisitions from the camera software:

    SOURCE/good/<product>/<run>/*.png
    SOURCE/defective/<product>/<run>/*.png
    SOURCE/defective/<product>/defects.json   (optional, see below)

Each run folder holds one acquisition: the 16 frames in acquisition order, or only
the 3 inspected ones (1st, 8th, 16th), as single-channel PNGs of the recipe's frame
size and bit depth, named so that sorting them by name gives their order. Runs are
numbered by the sorted order of their folder names; product ids are the product
folder names and must be unique across good/ and defective/.

``defects.json`` says what is wrong with a defective product, for the report's
severity table and patch-level figures: a list of
``{"kind": "stuck_particle", "vial": 2, "region": 3, "severity": 0.4, "mask": "mask.png"}``
(mask optional, a PNG of the frame size, relative to the product folder). Without it
the product counts as defective of kind "unspecified": strip and run figures hold,
patch-level ones do not count its patches.

Everything wrong is refused with an error naming the file and the fix; the dataset is
written to ``<out>.partial`` and renamed into place only when every run was read, so a
refused import leaves nothing behind.
"""
from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from vialguard.dataset import AcquisitionFields, DatasetHeader, DatasetWriter, DefectFields, read_header
from vialguard.errors import DatasetError
from vialguard.recipe import Recipe

LABEL_FOLDERS = ("good", "defective")
DEFECTS_FILE = "defects.json"
UNSPECIFIED = "unspecified"


@dataclass(frozen=True)
class ImportedRun:
    product_id: str
    label: str
    run_index: int
    frames: tuple[Path, ...]


def _sorted_dirs(folder: Path) -> list[Path]:
    return sorted((p for p in folder.iterdir() if p.is_dir() and not p.name.startswith(".")), key=lambda p: p.name)


def plan_import(source: Path, recipe: Recipe) -> list[ImportedRun]:
    """Every run of the folder, checked for layout and frame count (pixels are checked on reading)."""
    source = Path(source)
    if not source.is_dir():
        raise DatasetError(f"{source} is not a folder")
    unknown = [p.name for p in _sorted_dirs(source) if p.name not in LABEL_FOLDERS]
    if unknown:
        raise DatasetError(f"{source} holds folders {unknown}; only good/ and defective/ are read")
    runs: list[ImportedRun] = []
    seen: dict[str, str] = {}
    allowed = (recipe.frames_per_acquisition, len(recipe.inspected_frames))
    for label in LABEL_FOLDERS:
        folder = source / label
        if not folder.is_dir():
            continue
        for product in _sorted_dirs(folder):
            if product.name in seen:
                raise DatasetError(f"product '{product.name}' is both in {seen[product.name]}/ and {label}/")
            seen[product.name] = label
            run_dirs = _sorted_dirs(product)
            if not run_dirs:
                raise DatasetError(f"{product} has no run folder: put each acquisition in <product>/<run>/")
            for index, run in enumerate(run_dirs):
                frames = tuple(sorted(run.glob("*.png"), key=lambda p: p.name))
                if len(frames) not in allowed:
                    raise DatasetError(
                        f"{run} holds {len(frames)} PNG frames; recipe '{recipe.id}' needs "
                        f"{recipe.frames_per_acquisition} (a whole acquisition) or {len(recipe.inspected_frames)} "
                        f"(the inspected frames {list(recipe.inspected_frames)})")
                runs.append(ImportedRun(product.name, label, index, frames))
    if not runs:
        raise DatasetError(f"{source} has no good/<product>/<run>/*.png nor defective/<product>/<run>/*.png")
    counts = {len(r.frames) for r in runs}
    if len(counts) > 1:
        raise DatasetError(f"runs of {source} mix {sorted(counts)} frames per acquisition: use one count throughout")
    return runs


def read_frame(path: Path, recipe: Recipe) -> np.ndarray:
    """One frame as the recipe wants it, or a DatasetError saying what differs."""
    image = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if image is None:
        raise DatasetError(f"{path} is not a readable PNG")
    if image.ndim != 2:
        raise DatasetError(f"{path} has {image.shape[2]} channels; frames must be single-channel (grayscale)")
    want_dtype = np.uint8 if recipe.bit_depth == 8 else np.uint16
    if image.dtype != want_dtype:
        bits = 8 if image.dtype == np.uint8 else 16
        raise DatasetError(f"{path} is {bits}-bit; recipe '{recipe.id}' frames are {recipe.bit_depth}-bit")
    if image.shape != (recipe.frame_height, recipe.frame_width):
        raise DatasetError(f"{path} is {image.shape[1]}x{image.shape[0]}; recipe '{recipe.id}' frames are "
                           f"{recipe.frame_width}x{recipe.frame_height}")
    return image


def _defects(product_dir: Path, recipe: Recipe) -> tuple[list[DefectFields], list[np.ndarray]]:
    path = product_dir / DEFECTS_FILE
    empty = np.zeros((recipe.frame_height, recipe.frame_width), bool)
    if not path.is_file():
        return [DefectFields(UNSPECIFIED, 0, 0, 1.0)], [empty]
    try:
        items = json.loads(path.read_text())
        fields = [DefectFields(str(d["kind"]), int(d["vial"]), int(d["region"]), float(d.get("severity", 1.0)))
                  for d in items]
    except (ValueError, KeyError, TypeError) as exc:
        raise DatasetError(f"{path} must be a JSON list of {{kind, vial, region, severity, mask?}}: {exc}") from None
    if not fields:
        raise DatasetError(f"{path} lists no defect; delete it or name the product's defects")
    masks = []
    for d in items:
        if d.get("mask"):
            mask = cv2.imread(str(product_dir / d["mask"]), cv2.IMREAD_UNCHANGED)
            if mask is None or mask.shape[:2] != empty.shape:
                raise DatasetError(f"mask {product_dir / d['mask']} is missing or not {recipe.frame_width}x"
                                   f"{recipe.frame_height}")
            masks.append(mask.reshape(empty.shape[0], empty.shape[1], -1)[..., 0] > 0)
        else:
            masks.append(empty)
    return fields, masks


def import_folder(source: Path, out: Path, recipe: Recipe) -> DatasetHeader:
    """Write ``source`` (layout in the module docstring) as a dataset folder at ``out``."""
    source = Path(source)
    runs = plan_import(source, recipe)
    defects = {r.product_id: _defects(source / "defective" / r.product_id, recipe)
               for r in runs if r.label == "defective"}
    params = {"name": "vialguard.dataset_import", "version": 1, "kind": "import", "source": str(source.resolve()),
              "frames_per_acquisition": len(runs[0].frames)}
    out = Path(out)
    if out.exists():
        raise DatasetError(f"{out} already exists; import into a new folder")
    partial = out.with_name(out.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    try:
        with DatasetWriter(partial, recipe, 0, params) as writer:
            for run in runs:
                frames = np.stack([read_frame(p, recipe) for p in run.frames])
                fields, masks = defects.get(run.product_id, ([], []))
                writer.add(AcquisitionFields(run.product_id, run.run_index, run.label, tuple(fields)), frames, masks)
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)
        raise
    partial.rename(out)
    return read_header(out)
