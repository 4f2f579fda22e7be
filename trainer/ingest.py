"""Dataset ingestion: acquisitions on disk -> patches -> sharded TFRecords + index.

Two ways to look at an acquisition (``frames``):

- ``"all+rank"`` (training): all 16 frames plus the two rank images (per-pixel
  min and max over the 16 frames), 18 x 20 = 360 patches per acquisition, as in
  the paper's 2,815,200-patch training set. Only good products by default: the
  generator must learn what a good product looks like.
- ``"inspected"`` (calibration, evaluation): the 3 frames the line sends for
  inference, 60 patches per acquisition in the serving patch order, each with
  its ground-truth label; good and defective products alike.

Patches are cut by :mod:`vialguard.patching` at the model profile's patch size
(DESIGN invariant 1), quantised to the recipe's bit depth (see
:mod:`trainer.patch_records`) and written in acquisition order to shards of
``shard_size`` patches, one shard series per split. Memory stays bounded: at
most ``2 * workers`` acquisitions are in flight, whatever the dataset size. The
split is by product (:mod:`trainer.product_split`). ``index.json`` is written
last, so an interrupted ingestion leaves no index and is never mistaken for a
finished one.
"""
from __future__ import annotations

import logging
import time
from collections import deque
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from trainer.patch_records import PatchMeta, encode_patch, quantise
from trainer.product_split import split_products
from trainer.shard_index import (
    FRAME_MODES,
    INDEX_FILENAME,
    SPLITS,
    IngestError,
    Shard,
    ShardIndex,
    SplitIndex,
    save_index,
    source_digest,
)
from vialguard import dataset as acquisitions
from vialguard.dataset import AcquisitionRecord
from vialguard.errors import AcquisitionError
from vialguard.patching import cut_frame, frame_indices, rank_images, select_inspected
from vialguard.recipe import REGION_IDS, Recipe

log = logging.getLogger(__name__)
DEFAULT_SHARD_SIZE = 2048


@dataclass(frozen=True)
class IngestOptions:
    frames: str = "all+rank"
    patch_size: int | None = None  # None: the recipe's patch size
    include_defective: bool | None = None  # None: only for "inspected"
    shard_size: int = DEFAULT_SHARD_SIZE
    compression: str = ""  # or "GZIP": ~35 % smaller at 256 px, ~3x slower to write and slower to read
    val_fraction: float = 0.1
    seed: int = 0
    workers: int = 2

    def check(self) -> None:
        if self.frames not in FRAME_MODES:
            raise IngestError(f"frames must be one of {FRAME_MODES}, got '{self.frames}'")
        if self.shard_size < 1:
            raise IngestError(f"shard size must be at least 1 patch, got {self.shard_size}")
        if self.compression not in ("", "GZIP"):
            raise IngestError(f"compression must be 'GZIP' or '' (none), got '{self.compression}'")
        if not 0.0 <= self.val_fraction < 1.0:
            raise IngestError(f"validation fraction must be in [0, 1), got {self.val_fraction}")
        if self.workers < 1:
            raise IngestError(f"workers must be at least 1, got {self.workers}")
        if self.patch_size is not None and (self.patch_size <= 0 or self.patch_size % 16):
            raise IngestError(f"patch size must be a positive multiple of 16, got {self.patch_size}")


def _patch_labels(root: Path, record: AcquisitionRecord, recipe: Recipe, n_images: int) -> np.ndarray:
    """Per-patch ground truth for ``n_images`` images of one acquisition.

    A defect sits on the plastic and moves with the vial, so its mask (one per
    run) holds for every frame of the run and for both rank images. Labels come
    from vialguard.dataset.patch_labels, cut by the serving patch function.
    """
    if not record.defects:
        return np.zeros(n_images * recipe.patches_per_frame, np.int64)
    labels = np.asarray(acquisitions.patch_labels(root, record, recipe), dtype=np.int64).reshape(-1)
    if labels.size != recipe.patches_per_acquisition:
        raise IngestError(f"acquisition {record.acquisition_id}: patch_labels gave {labels.size} labels, "
                          f"expected {recipe.patches_per_acquisition}")
    return np.tile(labels[: recipe.patches_per_frame] > 0, n_images).astype(np.int64)


def _images(root: Path, record: AcquisitionRecord, recipe: Recipe, mode: str) -> list[tuple[np.ndarray, int, str]]:
    """(image, frame_index, kind) for every image this mode cuts patches from.

    For the inspected frames only those 3 PNGs are decoded (select_inspected
    applied to the manifest's frame list): decoding is most of the cost.
    """
    try:
        indices = frame_indices(len(record.frames), recipe)
    except AcquisitionError as exc:
        raise IngestError(f"acquisition {record.acquisition_id}: {exc}") from None
    if mode == "inspected":
        chosen = replace(record, frames=tuple(str(f) for f in select_inspected(list(record.frames), recipe)))
        frames = np.asarray(acquisitions.load_frames(root, chosen))
        return [(img, idx, "frame") for img, idx in zip(frames, recipe.inspected_frames)]
    frames = np.asarray(acquisitions.load_frames(root, record))
    low, high = rank_images(frames)
    return [(f, i, "frame") for i, f in zip(indices, frames)] + [(low, -1, "rank_min"), (high, -1, "rank_max")]


def acquisition_records(
    root: Path, record: AcquisitionRecord, recipe: Recipe, mode: str, patch_size: int | None
) -> tuple[list[bytes], np.ndarray]:
    """Serialised patch records of one acquisition and their per-patch labels."""
    defective = 1 if record.label == "defective" else 0
    images = _images(root, record, recipe, mode)
    n_cells = recipe.patches_per_frame
    n_regions = len(recipe.regions)
    labels = _patch_labels(root, record, recipe, len(images))
    out: list[bytes] = []
    for slot, (image, frame_index, kind) in enumerate(images):
        pixels = quantise(cut_frame(image, recipe, patch_size), recipe.bit_depth)
        for cell in range(n_cells):
            i = slot * n_cells + cell
            meta = PatchMeta(
                product_id=record.product_id,
                acquisition_id=record.acquisition_id,
                run_index=record.run_index,
                frame_slot=slot,
                frame_index=frame_index,
                image_kind=kind,
                vial=cell // n_regions,
                region=cell % n_regions,
                label=int(labels[i]),
                acquisition_label=defective,
            )
            out.append(encode_patch(pixels[cell], meta))
    return out, labels


class _ShardWriter:
    """Writes one split's records into shards of a fixed number of patches."""

    def __init__(self, directory: Path, split: str, shard_size: int, compression: str) -> None:
        self.directory, self.split, self.shard_size, self.compression = directory, split, shard_size, compression
        self.shards: list[Shard] = []
        self._writer: Any = None
        self._count = 0

    def write(self, serialized: bytes) -> None:
        import tensorflow as tf

        if self._writer is None:
            suffix = ".tfrecord.gz" if self.compression else ".tfrecord"
            self._name = f"{self.split}-{len(self.shards):05d}{suffix}"
            options = tf.io.TFRecordOptions(compression_type=self.compression)
            self._writer = tf.io.TFRecordWriter(str(self.directory / self._name), options)
            self._count = 0
        self._writer.write(serialized)
        self._count += 1
        if self._count >= self.shard_size:
            self.close()

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self.shards.append(Shard(self._name, self._count))
            self._writer = None


def _windowed(executor: ThreadPoolExecutor, jobs: Iterator[Any], fn: Any, window: int) -> Iterator[Any]:
    """Map ``fn`` over ``jobs`` in order, with at most ``window`` results held at once."""
    pending: deque[Future] = deque()
    for job in jobs:
        pending.append(executor.submit(fn, job))
        if len(pending) >= window:
            yield pending.popleft().result()
    while pending:
        yield pending.popleft().result()


def _check_recipe(root: Path, recipe: Recipe) -> None:
    """The dataset must have been made with this very recipe geometry."""
    header = acquisitions.read_header(root)
    if header.recipe_digest != recipe.digest():
        raise IngestError(f"{root} was made with recipe '{header.recipe_id}' ({header.recipe_digest}), not with "
                          f"recipe '{recipe.id}' ({recipe.digest()}); pass the dataset's recipe")


def _prepare_output(out_dir: Path, overwrite: bool) -> None:
    if out_dir.exists() and not out_dir.is_dir():
        raise IngestError(f"output {out_dir} exists and is not a directory")
    out_dir.mkdir(parents=True, exist_ok=True)
    stale = [p for p in out_dir.iterdir() if p.name == INDEX_FILENAME or ".tfrecord" in p.name]
    if stale and not overwrite:
        raise IngestError(f"{out_dir} already holds an ingested patch set; choose another directory or overwrite it")
    for path in stale:
        path.unlink()


def ingest(
    dataset_root: str | Path, out_dir: str | Path, recipe: Recipe, options: IngestOptions = IngestOptions(),
    overwrite: bool = False,
) -> ShardIndex:
    """Ingest a dataset directory into shards + ``index.json`` under ``out_dir``."""
    options.check()
    root, out = Path(dataset_root), Path(out_dir)
    digest = source_digest(root)  # also checks that root is a dataset
    include_defective = options.include_defective
    if include_defective is None:
        include_defective = options.frames == "inspected"
    _check_recipe(root, recipe)
    records = [r for r in acquisitions.iter_acquisitions(root) if include_defective or r.label == "good"]
    if not records:
        raise IngestError(f"{root} holds no {'' if include_defective else 'good '}acquisition to ingest")
    assignment = split_products((r.product_id for r in records), options.val_fraction, options.seed)
    _prepare_output(out, overwrite)
    writers = {s: _ShardWriter(out, s, options.shard_size, options.compression) for s in SPLITS}
    splits = {s: SplitIndex() for s in SPLITS}
    for s in SPLITS:
        splits[s].products = sorted(p for p, a in assignment.items() if a == s)
        splits[s].counts = {r: {"good": 0, "defective": 0} for r in REGION_IDS}
    patch_size = options.patch_size or recipe.patch_size
    n_regions = len(recipe.regions)
    import tensorflow  # noqa: F401  (loaded before the clock starts: throughput is the pipeline's own)

    started = time.monotonic()

    def work(record: AcquisitionRecord) -> tuple[AcquisitionRecord, list[bytes], np.ndarray]:
        return (record, *acquisition_records(root, record, recipe, options.frames, patch_size))

    per_acquisition = 0
    with ThreadPoolExecutor(max_workers=options.workers) as pool:
        for done, (record, serialized, labels) in enumerate(
            _windowed(pool, iter(records), work, 2 * options.workers), start=1
        ):
            split = assignment[record.product_id]
            for blob in serialized:
                writers[split].write(blob)
            stats = splits[split]
            stats.acquisitions += 1
            stats.patches += len(serialized)
            per_acquisition = len(serialized)
            for i, label in enumerate(labels):
                stats.counts[REGION_IDS[i % n_regions]]["defective" if label else "good"] += 1
            if done % 50 == 0:
                rate = sum(x.patches for x in splits.values()) / max(time.monotonic() - started, 1e-9)
                log.info("ingested %d/%d acquisitions (%.0f patches/s)", done, len(records), rate)
    for s in SPLITS:
        writers[s].close()
        splits[s].shards = writers[s].shards
    index = ShardIndex(
        patch_size=patch_size,
        bit_depth=recipe.bit_depth,
        frames=options.frames,
        compression=options.compression,
        recipe_id=recipe.id,
        recipe_digest=recipe.digest(),
        source_digest=digest,
        seed=options.seed,
        val_fraction=options.val_fraction,
        patches_per_acquisition=per_acquisition,
        splits=splits,
        source=str(root.resolve()),
        created_utc=datetime.now(timezone.utc).isoformat(timespec="seconds"),
        seconds=round(time.monotonic() - started, 3),
    )
    save_index(index, out)
    return index
