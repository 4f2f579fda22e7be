"""One pass of the generator over a labelled kit: every patch's 1 - SSIM map, kept for calibration.

Calibrating the local score needs the maps twice: once to measure what good
acquisitions show at each pixel, once to score every acquisition with those
statistics (and to compare the fused and per-frame variants). The generator, the
expensive part, runs once; the maps are kept in float16 ([A, frames, vials, regions,
h, w], about 7 MB per acquisition at 256 px), which moves a score by far less than
the gap between any two thresholds. Served numbers never come from this cache: the
held-out evaluation runs the version's own graph.
"""
from __future__ import annotations

import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np

from trainer.scoring import PATCH_FIELDS, ScoredSet
from vialguard.local_score import MAP_SSIM, LocalScoreModel, PatchLayout, local_scores

MapsFn = Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]]
"""patches [N, P, P, 1] -> (anomaly maps [N, h, w]: 1 - SSIM or the head's logits, phi [N])."""


@dataclass(frozen=True)
class KitMaps:
    """A kit's maps in patch order, the paper's phi, and the per-patch table they belong to."""

    layout: PatchLayout
    maps: np.ndarray   # float16 [A, F, V, R, h, w]; empty when the pass kept only exact scores
    phi: np.ndarray    # float64 [A * F * V * R]
    table: ScoredSet   # one row per patch, patch order within each acquisition; scores = phi
    exact: dict[str, np.ndarray] = field(default_factory=dict)  # name -> local scores from the float32 maps
    anomaly_map: str = MAP_SSIM  # which map ``maps`` holds (vialguard.local_score.MAP_KINDS)

    @property
    def acquisitions(self) -> int:
        return int(self.phi.size // self.layout.per_acquisition)

    def exact_scored(self, name: str) -> ScoredSet:
        """The table with the exact scores the pass computed for ``name``."""
        return self.table.with_scores(self.exact[name])

    def flat_maps(self, a: int) -> np.ndarray:
        """The [F*V*R, h, w] float32 maps of acquisition a, in patch order."""
        return self.maps[a].reshape(-1, *self.maps.shape[-2:]).astype(np.float32)

    def good_acquisitions(self) -> np.ndarray:
        per_acq = self.table.acquisition_defective.reshape(self.acquisitions, -1)[:, 0]
        return np.nonzero(~per_acq)[0]

    def product_of(self) -> np.ndarray:
        """Product id of each acquisition [A]."""
        return self.table.product_id.reshape(self.acquisitions, -1)[:, 0]

    def scored(self, model: LocalScoreModel | None, acquisitions: np.ndarray | None = None) -> ScoredSet:
        """The table with the local score of ``model`` (phi when None), optionally for some acquisitions."""
        rows = np.arange(self.acquisitions) if acquisitions is None else np.asarray(acquisitions)
        if model is None:
            scores = self.phi.reshape(self.acquisitions, -1)[rows].reshape(-1)
        else:
            scores = np.concatenate([local_scores(self.flat_maps(a), model) for a in rows]) if rows.size else \
                np.zeros(0)
        per = self.layout.per_acquisition
        take = (rows[:, None] * per + np.arange(per)[None, :]).reshape(-1)
        t = self.table
        return ScoredSet.from_columns(
            scores, region=t.region[take], vial=t.vial[take], frame=t.frame[take],
            acquisition_id=t.acquisition_id[take], product_id=t.product_id[take], run_index=t.run_index[take],
            patch_defective=t.patch_defective[take], acquisition_defective=t.acquisition_defective[take],
            runtime=t.runtime)


def patch_order(meta: Mapping[str, np.ndarray], layout: PatchLayout) -> np.ndarray:
    """Indices that put one acquisition's patches in vialguard.patching's order."""
    key = (np.asarray(meta["frame"]) * layout.vials + np.asarray(meta["vial"])) * layout.regions \
        + np.asarray(meta["region"])
    order = np.argsort(key, kind="stable")
    if not np.array_equal(key[order], np.arange(layout.per_acquisition)):
        raise ValueError(f"acquisition {meta['acquisition_id'][0]} does not hold each of the "
                         f"{layout.per_acquisition} patch positions exactly once")
    return order


def compute_kit_maps(maps_fn: MapsFn, stream: Iterable[tuple[np.ndarray, Mapping[str, Any]]],
                     layout: PatchLayout, runtime: str = "tensorflow-cpu",
                     exact_models: Mapping[str, LocalScoreModel] | None = None, keep_maps: bool = True,
                     anomaly_map: str = MAP_SSIM) -> KitMaps:
    """Run ``maps_fn`` over a labelled stream of whole acquisitions (one per chunk).

    ``exact_models`` are local scores to compute from the float32 maps as they pass (what
    the served graph computes); ``keep_maps=False`` keeps only those and phi.
    """
    maps, phi, seconds = [], [], []
    exact: dict[str, list[np.ndarray]] = {name: [] for name in (exact_models or {})}
    cols: dict[str, list[np.ndarray]] = {f: [] for f in PATCH_FIELDS}
    for patches, meta in stream:
        ids = np.unique(np.asarray(meta["acquisition_id"]))
        if ids.size != 1 or len(patches) != layout.per_acquisition:
            raise ValueError(f"each chunk must be one whole acquisition of {layout.per_acquisition} patches, got "
                             f"{len(patches)} patches of {ids.size} acquisitions")
        order = patch_order(meta, layout)
        start = time.perf_counter()
        m, p = maps_fn(np.ascontiguousarray(np.asarray(patches)[order], dtype=np.float32))
        seconds.append(time.perf_counter() - start)
        for name, model in (exact_models or {}).items():
            exact[name].append(local_scores(m, model).astype(np.float64))
        if keep_maps:
            maps.append(np.asarray(m, np.float16).reshape(layout.frames, layout.vials, layout.regions,
                                                          *m.shape[-2:]))
        phi.append(np.asarray(p, np.float64))
        for f in PATCH_FIELDS:
            cols[f].append(np.asarray(meta[f])[order])
    if not phi:
        raise ValueError("the kit is empty: nothing to score")
    all_phi = np.concatenate(phi)
    if not np.isfinite(all_phi).all():
        raise ValueError("some patch scores are NaN or infinite: the model is broken, refusing to go on")
    table = ScoredSet.from_columns(all_phi, **{f: np.concatenate(v) for f, v in cols.items()},
                                   batch_seconds=seconds, batch_sizes=[layout.per_acquisition] * len(seconds),
                                   runtime=runtime)
    stacked = np.stack(maps) if maps else np.zeros((0,), np.float16)
    return KitMaps(layout, stacked, all_phi, table, {name: np.concatenate(v) for name, v in exact.items()},
                   anomaly_map)


def keras_maps_fn(generator: Any, anomaly_map: str = MAP_SSIM, layout: PatchLayout | None = None) -> MapsFn:
    """(anomaly maps, phi) of patches through the generator (and its head, if any, or the strip
    reference with ``anomaly_map``), in TensorFlow: the served graph's own arithmetic."""
    import tensorflow as tf

    from trainer.inspector import inspection_maps
    from trainer.networks.generator import ENCODER_NAME

    size = generator.get_layer(ENCODER_NAME).input.shape[1]
    maps_of = inspection_maps(generator, anomaly_map, layout)

    @tf.function(input_signature=[tf.TensorSpec([None, size, size, 1], tf.float32)])
    def run(x: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        m, phi, _ = maps_of(x)
        return m, phi

    def call(patches: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        m, p = run(tf.constant(patches))
        return m.numpy(), p.numpy()

    return call
