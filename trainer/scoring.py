"""Score a labelled patch set into one tidy table for calibration and evaluation.

One row per patch: its score phi = 1 - SSIM(X, X_hat) (computed by the inspector
graph, the same SSIM that serves), where it comes from (frame slot, vial,
region, acquisition, product, run) and its truth (patch and acquisition label).
Patches are scored in batches of one acquisition (60) and each batch is timed,
because the paper reports time per patch as time per 60-patch batch / 60.
"""
from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from vialguard.recipe import REGION_IDS

PatchScorer = Callable[[np.ndarray], np.ndarray]
"""patches float32 [N, P, P, 1] in [0, 1] -> scores [N]."""

# Metadata fields, one value per patch, that a labelled stream must carry.
PATCH_FIELDS = ("acquisition_id", "product_id", "run_index", "frame", "vial", "region",
                "patch_defective", "acquisition_defective")
ACQUISITION_BATCH = 60


@dataclass(frozen=True)
class ScoredSet:
    """Tidy per-patch table (all arrays have one row per patch) plus batch timings."""

    scores: np.ndarray                 # float64 [n]
    region: np.ndarray                 # int [n], 0..3
    vial: np.ndarray                   # int [n]
    frame: np.ndarray                  # int [n], frame slot among the inspected frames
    acquisition_id: np.ndarray         # str [n]
    product_id: np.ndarray             # str [n]
    run_index: np.ndarray              # int [n]
    patch_defective: np.ndarray        # bool [n]: the defect lies in this patch
    acquisition_defective: np.ndarray  # bool [n]: the product is defective
    batch_seconds: np.ndarray = field(default_factory=lambda: np.zeros(0))  # float [B]
    batch_sizes: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    runtime: str = "unknown"           # what computed the scores and timings

    def __post_init__(self) -> None:
        n = np.asarray(self.scores).shape[0]
        for name in ("region", "vial", "frame", "acquisition_id", "product_id", "run_index",
                     "patch_defective", "acquisition_defective"):
            if np.asarray(getattr(self, name)).shape != (n,):
                raise ValueError(f"scored set column '{name}' must have {n} rows, "
                                 f"got shape {np.asarray(getattr(self, name)).shape}")
        region = np.asarray(self.region)
        if n and (region.min() < 0 or region.max() >= len(REGION_IDS)):
            raise ValueError(f"region indices must be 0..{len(REGION_IDS) - 1}, got {np.unique(region)}")

    @classmethod
    def from_columns(cls, scores: Any, **columns: Any) -> "ScoredSet":
        """Build with the right dtypes from array-likes (strings for the ids)."""
        return cls(
            scores=np.asarray(scores, dtype=np.float64),
            region=np.asarray(columns["region"], dtype=np.int64),
            vial=np.asarray(columns["vial"], dtype=np.int64),
            frame=np.asarray(columns["frame"], dtype=np.int64),
            acquisition_id=np.asarray(columns["acquisition_id"]).astype(str),
            product_id=np.asarray(columns["product_id"]).astype(str),
            run_index=np.asarray(columns["run_index"], dtype=np.int64),
            patch_defective=np.asarray(columns["patch_defective"], dtype=bool),
            acquisition_defective=np.asarray(columns["acquisition_defective"], dtype=bool),
            batch_seconds=np.asarray(columns.get("batch_seconds", np.zeros(0)), dtype=np.float64),
            batch_sizes=np.asarray(columns.get("batch_sizes", np.zeros(0)), dtype=np.int64),
            runtime=str(columns.get("runtime", "unknown")),
        )

    @property
    def n(self) -> int:
        return int(self.scores.shape[0])

    def acquisitions(self) -> tuple[np.ndarray, np.ndarray]:
        """(sorted unique acquisition ids, per-patch index into them)."""
        ids, inverse = np.unique(self.acquisition_id, return_inverse=True)
        return ids, inverse

    def mean_ms_per_patch(self) -> float:
        """Mean inference time per patch: total batch time / patches (paper's mu_tf)."""
        total = int(self.batch_sizes.sum())
        return float(self.batch_seconds.sum() * 1e3 / total) if total else float("nan")

    def mean_ms_per_batch(self) -> float:
        return float(self.batch_seconds.mean() * 1e3) if self.batch_seconds.size else float("nan")

    def with_scores(self, scores: np.ndarray) -> "ScoredSet":
        return replace(self, scores=np.asarray(scores, dtype=np.float64))


def _as_columns(meta: Mapping[str, Any], n: int) -> dict[str, np.ndarray]:
    missing = [f for f in PATCH_FIELDS if f not in meta]
    if missing:
        raise ValueError(f"labelled patches lack metadata fields {missing}")
    cols = {}
    for f in PATCH_FIELDS:
        value = np.asarray(meta[f])
        if value.dtype.kind == "O" or value.dtype.kind == "S":
            value = np.array([v.decode() if isinstance(v, bytes) else str(v) for v in value.ravel()])
        if value.shape != (n,):
            raise ValueError(f"metadata field '{f}' has shape {value.shape}, expected ({n},)")
        cols[f] = value
    return cols


def score_stream(
    scorer: PatchScorer,
    stream: Iterable[tuple[np.ndarray, Mapping[str, Any]]],
    batch: int = ACQUISITION_BATCH,
    runtime: str = "unknown",
) -> ScoredSet:
    """Score every patch of a labelled stream of (patches, metadata) chunks.

    Chunks may have any size; patches are regrouped into batches of ``batch``
    (one acquisition) so that each timed call is what the line sends to Triton.
    A NaN or infinite score stops here: calibrating on a broken model would
    publish thresholds that mean nothing.
    """
    patches_buf: list[np.ndarray] = []
    cols_buf: dict[str, list[np.ndarray]] = {f: [] for f in PATCH_FIELDS}
    scores: list[np.ndarray] = []
    seconds: list[float] = []
    sizes: list[int] = []
    pending = 0

    def flush(count: int) -> None:
        nonlocal pending
        chunk = np.concatenate(patches_buf, axis=0)
        head, tail = chunk[:count], chunk[count:]
        start = time.perf_counter()
        s = np.asarray(scorer(np.ascontiguousarray(head, dtype=np.float32)), dtype=np.float64).reshape(-1)
        seconds.append(time.perf_counter() - start)
        if s.shape[0] != count:
            raise ValueError(f"scorer returned {s.shape[0]} scores for {count} patches")
        scores.append(s)
        sizes.append(count)
        patches_buf.clear()
        if tail.shape[0]:
            patches_buf.append(tail)
        pending = int(tail.shape[0])

    for patches, meta in stream:
        patches = np.asarray(patches)
        if patches.ndim != 4 or patches.shape[-1] != 1:
            raise ValueError(f"patches must be [N, P, P, 1], got {patches.shape}")
        cols = _as_columns(meta, patches.shape[0])
        for f in PATCH_FIELDS:
            cols_buf[f].append(cols[f])
        patches_buf.append(patches)
        pending += patches.shape[0]
        while pending >= batch:
            flush(batch)
    if pending:
        flush(pending)
    if not sizes:
        raise ValueError("the labelled set is empty: nothing to score")
    all_scores = np.concatenate(scores)
    if not np.isfinite(all_scores).all():
        bad = int((~np.isfinite(all_scores)).sum())
        raise ValueError(f"{bad} patch scores are NaN or infinite: the model is broken, refusing to go on")
    merged = {f: np.concatenate(cols_buf[f]) for f in PATCH_FIELDS}
    return ScoredSet.from_columns(all_scores, **merged, batch_seconds=seconds, batch_sizes=sizes,
                                  runtime=runtime)


def keras_scorer(inspector: Callable[[Any], Mapping[str, Any]]) -> PatchScorer:
    """Scores from the TensorFlow inspector graph (trainer.inspector.build_inspector)."""
    import tensorflow as tf

    from vialguard.inspector_io import OUTPUT_SCORE

    return lambda patches: inspector(tf.constant(patches, tf.float32))[OUTPUT_SCORE].numpy()


def labelled_stream(
    dataset: Iterable[tuple[Any, Mapping[str, Any]]], inspected_frames: tuple[int, ...] | None = None
) -> Iterator[tuple[np.ndarray, dict[str, np.ndarray]]]:
    """Adapt trainer.pipeline.labelled_dataset elements to :func:`score_stream` chunks.

    Keeps only camera frames the line inspects: rank images (min/max) and, when
    ``inspected_frames`` is given, frames the recipe does not send are dropped,
    because thresholds must be calibrated on what serving will score. The frame
    column becomes the frame slot among the inspected frames.
    """
    from trainer import patch_records as pr

    for patches, meta in dataset:
        m = {k: np.asarray(v.numpy() if hasattr(v, "numpy") else v) for k, v in meta.items()}
        for key in (pr.IMAGE_KIND, pr.ACQUISITION_ID, pr.PRODUCT_ID):
            m[key] = np.array([v.decode() if isinstance(v, bytes) else str(v) for v in m[key]])
        kind = m[pr.IMAGE_KIND]
        keep = kind == "frame"
        frame = m[pr.FRAME_SLOT].astype(np.int64)
        if inspected_frames is not None:
            lookup = {f: slot for slot, f in enumerate(inspected_frames)}
            keep &= np.isin(m[pr.FRAME_INDEX], list(inspected_frames))
            frame = np.array([lookup.get(int(f), -1) for f in m[pr.FRAME_INDEX]], dtype=np.int64)
        if not keep.any():
            continue
        p = np.asarray(patches.numpy() if hasattr(patches, "numpy") else patches)[keep]
        yield p, {
            "acquisition_id": m[pr.ACQUISITION_ID][keep], "product_id": m[pr.PRODUCT_ID][keep],
            "run_index": m[pr.RUN_INDEX][keep], "frame": frame[keep], "vial": m[pr.VIAL][keep],
            "region": m[pr.REGION][keep], "patch_defective": m[pr.LABEL][keep] > 0,
            "acquisition_defective": m[pr.ACQUISITION_LABEL][keep] > 0,
        }


def onnx_scorer(model: bytes | str, threads: int | None = None) -> PatchScorer:
    """Scores from the exported ONNX graph under ONNX Runtime (the CPU serving path)."""
    import onnxruntime as ort

    from vialguard.inspector_io import INPUT_PATCHES, OUTPUT_SCORE

    options = ort.SessionOptions()
    if threads:
        options.intra_op_num_threads = threads
    session = ort.InferenceSession(model, options, providers=["CPUExecutionProvider"])
    return lambda patches: session.run([OUTPUT_SCORE], {INPUT_PATCHES: patches})[0]
