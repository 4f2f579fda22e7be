"""The on-disk acquisition format shared by the simulator (writer) and the trainer (reader).

Layout of a dataset folder::

    <root>/dataset.json          header: format, recipe id and digest, seed, generator, counts
    <root>/manifest.jsonl        one JSON line per acquisition, appended as it is written
    <root>/P0007/R03/f00.png     8-bit PNG frames, 16 per acquisition
    <root>/P0007/R03/mask0.png   one mask per defect, in that run's pose (0 / 255)

The manifest is written line by line and flushed, so a writer that dies leaves a
readable prefix: a reader skips a last line cut in half, and nothing else.
Patch labels are cut from the masks with :func:`vialguard.patching.cut_frame`,
the one patching function (DESIGN invariant 1), never by a second cropping code.
"""
from __future__ import annotations

import json
import os
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import IO, Any, Iterator, Sequence

import cv2
import numpy as np

from vialguard.errors import DatasetError
from vialguard.patching import cut_frame
from vialguard.recipe import Recipe

FORMAT = "vialguard-acquisitions/1"
HEADER_NAME = "dataset.json"
MANIFEST_NAME = "manifest.jsonl"
LABELS = ("good", "defective")


@dataclass(frozen=True)
class DefectRecord:
    """One defect of an acquisition: kind, where it is (vial, region index), severity, mask and bbox."""

    kind: str
    vial: int
    region: int
    severity: float
    mask: str  # path relative to the dataset root
    bbox: tuple[int, int, int, int]  # x, y, width, height in frame pixels


@dataclass(frozen=True)
class AcquisitionRecord:
    """One line of the manifest."""

    acquisition_id: str
    product_id: str
    run_index: int
    label: str
    frames: tuple[str, ...]
    defects: tuple[DefectRecord, ...] = ()


@dataclass(frozen=True)
class DatasetHeader:
    """``dataset.json``: what the dataset is, for which recipe, made how."""

    format: str
    recipe_id: str
    recipe_digest: str
    seed: int
    generator: dict[str, Any]
    counts: dict[str, Any]


@dataclass(frozen=True)
class DefectFields:
    """What a writer is told about a defect; the writer adds the mask path and bbox."""

    kind: str
    vial: int
    region: int
    severity: float


@dataclass(frozen=True)
class AcquisitionFields:
    """What a writer is told about an acquisition; the writer adds ids and file paths."""

    product_id: str
    run_index: int
    label: str
    defects: tuple[DefectFields, ...] = field(default_factory=tuple)


def acquisition_id(product_id: str, run_index: int) -> str:
    return f"{product_id}-R{run_index:02d}"


def encode_png(image: np.ndarray, noisy: bool) -> bytes:
    """Lossless PNG bytes of an 8-bit image.

    Sensor noise defeats deflate's string matching: Huffman-only coding is both
    smaller and faster for camera frames; masks are mostly zeros and want deflate.
    """
    params = [cv2.IMWRITE_PNG_COMPRESSION, 1]
    if noisy:
        params += [cv2.IMWRITE_PNG_STRATEGY, cv2.IMWRITE_PNG_STRATEGY_HUFFMAN_ONLY]
    ok, data = cv2.imencode(".png", image, params)
    if not ok:
        raise DatasetError(f"could not encode a {image.shape} {image.dtype} image as PNG")
    return data.tobytes()


def _write_png(path: Path, image: np.ndarray, noisy: bool) -> None:
    path.write_bytes(encode_png(image, noisy))


def _bbox(mask: np.ndarray) -> tuple[int, int, int, int]:
    ys, xs = np.nonzero(mask)
    if ys.size == 0:
        return (0, 0, 0, 0)
    return (int(xs.min()), int(ys.min()), int(xs.max() - xs.min() + 1), int(ys.max() - ys.min() + 1))


class DatasetWriter:
    """Writes a dataset folder: frames and masks as PNG, the manifest one flushed line at a time.

    Use as a context manager, or call :meth:`close` to write the final counts.
    """

    def __init__(self, root: str | Path, recipe: Recipe, seed: int, generator_params: dict[str, Any],
                 encode_workers: int | None = None) -> None:
        self.root = Path(root)
        self.recipe = recipe
        self.seed = int(seed)
        self.generator = dict(generator_params)
        if (self.root / HEADER_NAME).exists() or (self.root / MANIFEST_NAME).exists():
            raise DatasetError(f"{self.root} already holds a dataset; write into an empty folder")
        self.root.mkdir(parents=True, exist_ok=True)
        self._ids: set[str] = set()
        self._products: set[str] = set()
        self._labels: Counter[str] = Counter()
        self._kinds: Counter[str] = Counter()
        self._write_header()
        self._manifest: IO[str] | None = open(self.root / MANIFEST_NAME, "a", encoding="utf-8")
        # PNG encoding releases the GIL: a few threads keep the writer from being the bottleneck.
        self._pool = ThreadPoolExecutor(max_workers=encode_workers or min(4, os.cpu_count() or 1))

    def _counts(self) -> dict[str, Any]:
        return {
            "acquisitions": len(self._ids),
            "products": len(self._products),
            "good_acquisitions": self._labels["good"],
            "defective_acquisitions": self._labels["defective"],
            "defects_by_kind": dict(sorted(self._kinds.items())),
        }

    def _write_header(self) -> None:
        header = DatasetHeader(FORMAT, self.recipe.id, self.recipe.digest(), self.seed, self.generator, self._counts())
        tmp = self.root / (HEADER_NAME + ".tmp")
        tmp.write_text(json.dumps(asdict(header), indent=2, sort_keys=True) + "\n", encoding="utf-8")
        os.replace(tmp, self.root / HEADER_NAME)

    def _check(self, fields: AcquisitionFields, frames: np.ndarray, masks: Sequence[np.ndarray]) -> str:
        rec = self.recipe
        acq = acquisition_id(fields.product_id, fields.run_index)
        if acq in self._ids:
            raise DatasetError(f"acquisition {acq} was already written to {self.root}")
        if fields.label not in LABELS:
            raise DatasetError(f"acquisition {acq}: label must be 'good' or 'defective', got {fields.label!r}")
        if (fields.label == "defective") != bool(fields.defects):
            raise DatasetError(f"acquisition {acq}: a {fields.label} acquisition with {len(fields.defects)} defects")
        expected = (rec.frames_per_acquisition, rec.frame_height, rec.frame_width)
        # A whole acquisition, or only its inspected frames (an import from a line that saves those).
        counts = (rec.frames_per_acquisition, len(rec.inspected_frames))
        if frames.dtype != np.uint8 or frames.ndim != 3 or frames.shape[0] not in counts or frames.shape[1:] != expected[1:]:
            raise DatasetError(
                f"acquisition {acq}: frames must be uint8 {expected} (or only the {counts[1]} inspected), "
                f"got {frames.dtype} {frames.shape}"
            )
        if len(masks) != len(fields.defects):
            raise DatasetError(f"acquisition {acq}: {len(fields.defects)} defects but {len(masks)} masks")
        for i, (d, m) in enumerate(zip(fields.defects, masks)):
            if m.shape != expected[1:]:
                raise DatasetError(f"acquisition {acq}: mask {i} is {m.shape}, frames are {expected[1:]}")
            if not 0.0 <= d.severity <= 1.0:
                raise DatasetError(f"acquisition {acq}: defect {i} severity must be in [0, 1], got {d.severity}")
            if not (0 <= d.vial < len(rec.vials) and 0 <= d.region < len(rec.regions)):
                raise DatasetError(f"acquisition {acq}: defect {i} names vial {d.vial} region {d.region}, "
                                   f"outside recipe '{rec.id}'")
        return acq

    def add(self, fields: AcquisitionFields, frames: np.ndarray, masks: Sequence[np.ndarray]) -> AcquisitionRecord:
        """Write one acquisition's PNGs, then append its manifest line (so a line means complete files)."""
        if self._manifest is None:
            raise DatasetError(f"the writer of {self.root} is closed")
        frames = np.asarray(frames)
        acq = self._check(fields, frames, masks)
        rel = Path(fields.product_id) / f"R{fields.run_index:02d}"
        (self.root / rel).mkdir(parents=True, exist_ok=True)
        frame_paths = [(rel / f"f{i:02d}.png").as_posix() for i in range(len(frames))]
        list(self._pool.map(lambda job: _write_png(self.root / job[0], job[1], noisy=True), zip(frame_paths, frames)))
        defects = []
        for i, (d, m) in enumerate(zip(fields.defects, masks)):
            path = (rel / f"mask{i}.png").as_posix()
            binary = np.asarray(m).astype(bool)
            _write_png(self.root / path, binary.astype(np.uint8) * 255, noisy=False)
            defects.append(DefectRecord(d.kind, int(d.vial), int(d.region), float(d.severity), path, _bbox(binary)))
        record = AcquisitionRecord(acq, fields.product_id, int(fields.run_index), fields.label,
                                   tuple(frame_paths), tuple(defects))
        self._manifest.write(json.dumps(asdict(record), separators=(",", ":")) + "\n")
        self._manifest.flush()
        self._ids.add(acq)
        self._products.add(fields.product_id)
        self._labels[fields.label] += 1
        self._kinds.update(d.kind for d in fields.defects)
        return record

    def close(self) -> DatasetHeader:
        """Flush the manifest to disk and write the final counts into the header."""
        if self._manifest is not None:
            self._manifest.flush()
            os.fsync(self._manifest.fileno())
            self._manifest.close()
            self._manifest = None
            self._pool.shutdown()
            self._write_header()
        return read_header(self.root)

    def __enter__(self) -> "DatasetWriter":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def read_header(root: str | Path) -> DatasetHeader:
    """Read and check ``dataset.json``."""
    path = Path(root) / HEADER_NAME
    if not path.is_file():
        raise DatasetError(f"{root} is not a vialguard dataset: {HEADER_NAME} is missing")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise DatasetError(f"{path} is not valid JSON: {exc}") from exc
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        found = data.get("format") if isinstance(data, dict) else None
        raise DatasetError(f"{path}: format is {found!r}, this reader understands {FORMAT!r}")
    try:
        return DatasetHeader(str(data["format"]), str(data["recipe_id"]), str(data["recipe_digest"]),
                             int(data["seed"]), dict(data["generator"]), dict(data["counts"]))
    except (KeyError, TypeError, ValueError) as exc:
        raise DatasetError(f"{path}: header field missing or malformed: {exc}") from exc


def _record(data: Any, where: str) -> AcquisitionRecord:
    try:
        defects = tuple(
            DefectRecord(str(d["kind"]), int(d["vial"]), int(d["region"]), float(d["severity"]), str(d["mask"]),
                         tuple(int(v) for v in d["bbox"]))  # type: ignore[arg-type]
            for d in data.get("defects", [])
        )
        record = AcquisitionRecord(str(data["acquisition_id"]), str(data["product_id"]), int(data["run_index"]),
                                   str(data["label"]), tuple(str(f) for f in data["frames"]), defects)
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise DatasetError(f"{where}: acquisition entry is missing a field or has a wrong type: {exc}") from exc
    if record.label not in LABELS:
        raise DatasetError(f"{where}: label must be 'good' or 'defective', got {record.label!r}")
    return record


def iter_acquisitions(root: str | Path) -> Iterator[AcquisitionRecord]:
    """The manifest's acquisitions in written order; a last line cut by a crash is skipped."""
    read_header(root)
    path = Path(root) / MANIFEST_NAME
    if not path.is_file():
        raise DatasetError(f"{root} is not a complete vialguard dataset: {MANIFEST_NAME} is missing")
    with open(path, encoding="utf-8") as fh:
        lines = fh.read().split("\n")
    # After a clean write the text ends with "\n", so the last piece is empty; anything else
    # there is a line the writer did not finish.
    for number, line in enumerate(lines[:-1], start=1):
        if not line.strip():
            continue
        try:
            data = json.loads(line)
        except json.JSONDecodeError as exc:
            raise DatasetError(f"{path} line {number} is not valid JSON: {exc}") from exc
        yield _record(data, f"{path} line {number}")


def _read_png(root: Path, rel: str, what: str) -> np.ndarray:
    path = root / rel
    if not path.is_file():
        raise DatasetError(f"{what} {rel} is missing from {root}")
    image = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if image is None or image.ndim != 2:
        raise DatasetError(f"{what} {rel} in {root} is not a readable single-channel PNG")
    return image


def load_frames(root: str | Path, record: AcquisitionRecord) -> np.ndarray:
    """The acquisition's frames as uint8 [n_frames, H, W]."""
    frames = [_read_png(Path(root), rel, f"frame of {record.acquisition_id}") for rel in record.frames]
    if not frames:
        raise DatasetError(f"acquisition {record.acquisition_id} lists no frames")
    shapes = {f.shape for f in frames}
    if len(shapes) != 1:
        raise DatasetError(f"acquisition {record.acquisition_id} has frames of different sizes: {sorted(shapes)}")
    if frames[0].dtype != np.uint8:
        raise DatasetError(f"acquisition {record.acquisition_id}: frames must be 8-bit, got {frames[0].dtype}")
    return np.stack(frames)


def load_mask(root: str | Path, defect: DefectRecord) -> np.ndarray:
    """The defect's mask as bool [H, W] in the pose of its run."""
    return _read_png(Path(root), defect.mask, f"mask of a {defect.kind}") > 0


def patch_labels(
    root: str | Path, record: AcquisitionRecord, recipe: Recipe, patch_size: int | None = None
) -> np.ndarray:
    """Which of the acquisition's inspected patches hold a defect: bool [n_inspected * vials * regions].

    Defects are on the plastic, so the same mask holds for every frame of the run;
    the masks are cut with the serving patch function, in serving patch order.
    """
    union = np.zeros((recipe.frame_height, recipe.frame_width), np.uint8)
    for defect in record.defects:
        mask = load_mask(root, defect)
        if mask.shape != union.shape:
            raise DatasetError(f"mask {defect.mask} is {mask.shape[1]}x{mask.shape[0]}, recipe '{recipe.id}' "
                               f"frames are {recipe.frame_width}x{recipe.frame_height}")
        union |= mask.astype(np.uint8) * 255
    per_frame = cut_frame(union, recipe, patch_size).reshape(recipe.patches_per_frame, -1).max(axis=1) > 0
    return np.tile(per_frame, len(recipe.inspected_frames))
