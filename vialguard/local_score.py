"""The local anomaly score: where a patch differs from good ones, not how much on average.

The paper's phi (eq. 9) is the *mean* of the SSIM map over the patch: a 3 px particle
covers 0.1 % of a 256 px patch and moves that mean less than bubbles, the meniscus and
pose do. The local score looks at the map itself:

    m = 1 - SSIM map(X, X_hat)                  [h, w] per patch (the one SSIM), or another
                                                anomaly map of the same size (MAP_KINDS)
    m = Gaussian(m, smooth_sigma)               pixel noise averaged out (zero-padded 'same')
    m = min over the frames of one vial/region  (optional fusion, below; a version may
                                                smooth after it instead, see below)
    m = m / tail_r[row]                         optional (row_scale, from version 8): each row's
                                                good tail, below
    z = (m - mean_r) / scale_r                  per pixel, region r's good statistics
    score = max over the pixels of z

``mean_r`` and ``scale_r`` are what good patches of region r show at each pixel (edges
and the flag's relief reconstruct less well than the liquid, so they vary more); they
are measured on good acquisitions, stored in the version and baked into its graph.
``scale = sqrt(std**2 + floor**2)`` with ``floor`` the region's median std, so a pixel
that happened to vary little in the reference set cannot turn noise into a reject.
Both are taken as the maximum over a small neighbourhood (``dilate`` px): the strip's
pose moves an edge by a few pixels from run to run, and a pixel next to an edge must be
judged by what the edge does there in any run (measured on the calibration kit: strip
AUROC 0.59 -> 0.70 with smoothing and a 7 px neighbourhood).

Fusion over frames uses what the line knows: the three inspected frames of one
acquisition share the strip's pose, so a stuck particle, a spot or a dent sits on the
same pixel in all three, while bubbles, drops and the meniscus move. The per-pixel
minimum over the frames keeps what persists and drops what moves; the fused score is
given to each of the three patches of that vial and region, so every downstream rule
(eq. 13, k-of-n) still sees one score per patch.

Smoothing after the fusion (``smooth_after_fusion``) takes the minimum of the raw maps:
smoothing first spreads a bubble's thin ring over its neighbourhood, so three bubbles
of three frames that merely pass near one pixel all reach it and survive the minimum.
Measured with the strip map (held-out kit, 2026-12-02): strip AUROC 0.880 -> 0.891, and
it smooths one map per vial and region instead of one per frame.

The row tail (``row_scale``): what good patches show at one pixel is measured on a few
hundred acquisitions, so an event that is rare at any one pixel but common somewhere along
a row never reached that pixel's spread. Three bubbles of three frames that happen to
cover one pixel are such an event: 10-45 px under the meniscus they happen in about 1 % of
good vials, each at a pixel whose spread is tiny, and scored 100 z, more than foam at the
meniscus (20-50 z). Each row of a region is therefore divided first by a high quantile of
every good value in that row (all vials, columns and acquisitions; floored, so a quiet row
is not blown up): a row where such events happen weighs them as what they are, a quiet
row keeps its sensitivity. The strip map hands the liquid body on in each vial's meniscus
rows (vialguard.strip_reference), so there "row" means "depth under the meniscus".
Measured on version 7's kits: held-out strip AUROC 0.905 -> 0.953 (trainer.calibrate_local).

The graph knows which patch is which only by its position (vialguard.patching's fixed
order), so a request is one or more whole acquisitions: N = A x frames x vials x regions.

This module is the numpy reference; trainer.local_score_tf is the same arithmetic in
TensorFlow for the served graph, tested against it.
"""
from __future__ import annotations

import io
from dataclasses import dataclass

import numpy as np

from vialguard.errors import CalibrationError
from vialguard.recipe import Recipe

SCORE_PHI = "phi"                   # the paper's 1 - mean SSIM (eq. 9)
SCORE_LOCAL = "local"               # max of the normalised SSIM map, frame by frame
SCORE_LOCAL_FUSED = "local-fused"   # the same after the per-pixel minimum over the frames
SCORE_KINDS = (SCORE_PHI, SCORE_LOCAL, SCORE_LOCAL_FUSED)
FILENAME = "local_score.npz"
MAP_SSIM = "ssim"            # 1 - SSIM(X, X_hat): the generator's residual
MAP_SEGMENTER = "segmenter"  # the segmentation head's logits (trainer.networks.segmenter)
MAP_STRIP = "strip"          # each vial against the other vials of its strip (vialguard.strip_reference)
MAP_KINDS = (MAP_SSIM, MAP_SEGMENTER, MAP_STRIP)


@dataclass(frozen=True)
class PatchLayout:
    """How the patches of one acquisition are laid out: frames x vials x regions, in that order."""

    frames: int
    vials: int
    regions: int

    def __post_init__(self) -> None:
        if min(self.frames, self.vials, self.regions) < 1:
            raise ValueError(f"a patch layout needs at least one frame, vial and region, got {self}")

    @property
    def per_frame(self) -> int:
        return self.vials * self.regions

    @property
    def per_acquisition(self) -> int:
        return self.frames * self.per_frame

    @classmethod
    def from_recipe(cls, recipe: Recipe) -> "PatchLayout":
        return cls(len(recipe.inspected_frames), len(recipe.vials), len(recipe.regions))

    def as_dict(self) -> dict[str, int]:
        return {"frames": self.frames, "vials": self.vials, "regions": self.regions}

    def check_count(self, n: int) -> int:
        """The number of whole acquisitions in n patches, or a ValueError that says what is wrong."""
        if n % self.per_acquisition:
            raise ValueError(f"{n} patches are not whole acquisitions of {self.per_acquisition} "
                             f"({self.frames} frames x {self.vials} vials x {self.regions} regions)")
        return n // self.per_acquisition


@dataclass(frozen=True)
class LocalScoreModel:
    """Everything the local score needs besides the generator: layout, fusion and statistics."""

    layout: PatchLayout
    fuse_frames: bool
    mean: np.ndarray   # float32 [regions, h, w]
    scale: np.ndarray  # float32 [regions, h, w], > 0
    smooth_sigma: float = 0.0  # Gaussian smoothing of the map before anything else (0: none)
    anomaly_map: str = MAP_SSIM  # which map the statistics are of (MAP_KINDS)
    smooth_after_fusion: bool = False  # smooth the fused map instead of each frame's (see above)
    row_scale: np.ndarray | None = None  # float32 [regions, h] > 0: each row's good tail (see above); None: 1

    def __post_init__(self) -> None:
        want = (self.layout.regions,)
        if self.mean.shape != self.scale.shape or self.mean.ndim != 3 or self.mean.shape[:1] != want:
            raise CalibrationError(f"local score statistics must be [regions={self.layout.regions}, h, w] twice, "
                                   f"got {self.mean.shape} and {self.scale.shape}")
        if not (np.isfinite(self.mean).all() and np.isfinite(self.scale).all() and (self.scale > 0).all()):
            raise CalibrationError("local score statistics must be finite with a positive scale")
        if self.row_scale is not None and (self.row_scale.shape != self.mean.shape[:2]
                                           or not np.isfinite(self.row_scale).all() or (self.row_scale <= 0).any()):
            raise CalibrationError(f"local score row scales must be [regions, h] = {self.mean.shape[:2]}, finite and "
                                   f"positive, got {self.row_scale.shape}")
        if self.anomaly_map not in MAP_KINDS:
            raise CalibrationError(f"local score statistics of an unknown map '{self.anomaly_map}'; known: "
                                   f"{', '.join(MAP_KINDS)}")

    @property
    def kind(self) -> str:
        return SCORE_LOCAL_FUSED if self.fuse_frames else SCORE_LOCAL

    @property
    def score_unit(self) -> float:
        """The most map units one unit of this score stands for (the largest per-pixel scale, times
        the row tail the map is divided by first): a score difference times this is a difference of
        the map itself, in which invariant 2 (1e-4 of the one SSIM) is read."""
        scale = self.scale.astype(np.float64)
        if self.row_scale is not None:
            scale = scale * self.row_scale.astype(np.float64)[..., None]
        return float(scale.max())

    @property
    def map_shape(self) -> tuple[int, int]:
        return int(self.mean.shape[1]), int(self.mean.shape[2])

    def to_bytes(self) -> bytes:
        buf = io.BytesIO()
        np.savez_compressed(buf, mean=self.mean.astype(np.float32), scale=self.scale.astype(np.float32),
                            layout=np.array([self.layout.frames, self.layout.vials, self.layout.regions]),
                            fuse_frames=np.array(bool(self.fuse_frames)), smooth_sigma=np.array(self.smooth_sigma),
                            anomaly_map=np.array(self.anomaly_map),
                            smooth_after_fusion=np.array(bool(self.smooth_after_fusion)),
                            **({} if self.row_scale is None else {"row_scale": self.row_scale.astype(np.float32)}))
        return buf.getvalue()

    @classmethod
    def from_bytes(cls, data: bytes) -> "LocalScoreModel":
        try:
            with np.load(io.BytesIO(data)) as z:
                frames, vials, regions = (int(v) for v in z["layout"])
                sigma = float(z["smooth_sigma"]) if "smooth_sigma" in z else 0.0
                source = str(z["anomaly_map"]) if "anomaly_map" in z else MAP_SSIM  # versions before the strip map
                after = bool(z["smooth_after_fusion"]) if "smooth_after_fusion" in z else False  # before version 7
                rows = z["row_scale"].astype(np.float32) if "row_scale" in z else None  # before version 8
                return cls(PatchLayout(frames, vials, regions), bool(z["fuse_frames"]),
                           z["mean"].astype(np.float32), z["scale"].astype(np.float32), sigma, source, after, rows)
        except (KeyError, ValueError, OSError) as exc:
            raise CalibrationError(f"local score statistics are unreadable: {exc}") from exc


def smoothing_kernel(sigma: float) -> np.ndarray:
    """The 1-D Gaussian of the smoothing, radius ceil(3 sigma), normalised; [1.0] for sigma 0."""
    if sigma <= 0:
        return np.ones(1, np.float32)
    radius = int(np.ceil(3 * sigma))
    x = np.arange(-radius, radius + 1, dtype=np.float64)
    g = np.exp(-0.5 * (x / sigma) ** 2)
    return (g / g.sum()).astype(np.float32)


def smooth(maps: np.ndarray, sigma: float) -> np.ndarray:
    """Separable Gaussian of [N, h, w] maps, zero-padded to the same size (as the served graph does)."""
    k = smoothing_kernel(sigma)
    if k.size == 1:
        return np.asarray(maps, np.float32)
    r = k.size // 2
    h, w = maps.shape[-2:]
    padded = np.pad(np.asarray(maps, np.float32), ((0, 0), (r, r), (0, 0)))
    rows = sum(k[i] * padded[:, i:i + h, :] for i in range(k.size))
    padded = np.pad(rows, ((0, 0), (0, 0), (r, r)))
    return sum(k[j] * padded[:, :, j:j + w] for j in range(k.size)).astype(np.float32)


def _dilate(stats: np.ndarray, size: int) -> np.ndarray:
    """Per-region maximum over a size x size neighbourhood ([R, h, w]), edges clamped."""
    if size <= 1:
        return stats
    from numpy.lib.stride_tricks import sliding_window_view

    r = size // 2
    padded = np.pad(stats, ((0, 0), (r, size - 1 - r), (r, size - 1 - r)), mode="edge")
    return sliding_window_view(padded, (size, size), axis=(1, 2)).max(axis=(-2, -1))


def by_position(maps: np.ndarray, layout: PatchLayout) -> np.ndarray:
    """[N, h, w] in patch order -> [A, frames, vials, regions, h, w]."""
    acquisitions = layout.check_count(maps.shape[0])
    return maps.reshape(acquisitions, layout.frames, layout.vials, layout.regions, *maps.shape[1:])


def fuse(stacked: np.ndarray, fuse_frames: bool) -> np.ndarray:
    """[A, F, V, R, h, w] -> the maps the score is taken over: [A, 1, V, R, h, w] fused, else as is."""
    return stacked.min(axis=1, keepdims=True) if fuse_frames else stacked


def fused_maps(anomaly_maps: np.ndarray, layout: PatchLayout, fuse_frames: bool, smooth_sigma: float,
               smooth_after_fusion: bool) -> np.ndarray:
    """[N, h, w] maps in patch order -> the smoothed (fused) maps scores are taken over,
    [A, 1 or frames, vials, regions, h, w] float32."""
    maps = np.asarray(anomaly_maps, np.float32)
    if not (smooth_after_fusion and fuse_frames):
        return fuse(by_position(smooth(maps, smooth_sigma), layout), fuse_frames)
    fused = fuse(by_position(maps, layout), True)
    return smooth(fused.reshape(-1, *fused.shape[-2:]), smooth_sigma).reshape(fused.shape)


def local_scores(anomaly_maps: np.ndarray, model: LocalScoreModel) -> np.ndarray:
    """Local score of every patch, [N] float32, from its 1 - SSIM map [N, h, w] (patch order)."""
    maps = fused_maps(anomaly_maps, model.layout, model.fuse_frames, model.smooth_sigma, model.smooth_after_fusion)
    if model.row_scale is not None:
        maps = maps / model.row_scale[None, None, None, :, :, None]
    z = (maps - model.mean[None, None, None]) / model.scale[None, None, None]
    score = z.reshape(*z.shape[:4], -1).max(axis=-1)  # [A, F or 1, V, R]
    score = np.broadcast_to(score, (score.shape[0], model.layout.frames, *score.shape[2:]))
    return np.ascontiguousarray(score, dtype=np.float32).reshape(-1)


ROW_TAIL_KEPT = 1024  # largest values kept per region and row: a 0.9999 tail of up to ~8,000 acquisitions


def _upper_quantile(top: np.ndarray, count: int, q: float) -> np.ndarray:
    """np.quantile(values, q) (linear) along the last axis from the values' ``top.shape[-1]`` largest,
    sorted in decreasing order, of ``count`` values in all."""
    position = q * (count - 1)
    below, frac = int(np.floor(position)), position - np.floor(position)
    first = count - 1 - below  # rank from the top of sorted[below]
    if first >= top.shape[-1]:
        raise CalibrationError(f"the {q} quantile of {count} values needs their {first + 1} largest, but only "
                               f"{top.shape[-1]} are kept: calibrate on fewer acquisitions or a lower quantile")
    upper = top[..., first - 1] if first >= 1 else top[..., 0]
    return top[..., first] * (1.0 - frac) + upper * frac


class StatisticsAccumulator:
    """Per-region, per-pixel mean and std of the (fused) maps of good acquisitions, streamed, and
    each row's largest values (for the row tail, ``row_quantile``)."""

    def __init__(self, layout: PatchLayout, fuse_frames: bool, smooth_sigma: float = 0.0,
                 anomaly_map: str = MAP_SSIM, smooth_after_fusion: bool = False) -> None:
        self.layout, self.fuse_frames, self.smooth_sigma = layout, fuse_frames, smooth_sigma
        self.anomaly_map, self.smooth_after_fusion = anomaly_map, smooth_after_fusion
        self._sum: np.ndarray | None = None
        self._sum_sq: np.ndarray | None = None
        self._top: np.ndarray | None = None  # [regions, h, <= ROW_TAIL_KEPT], decreasing
        self.samples = 0  # maps per region

    def add(self, anomaly_maps: np.ndarray) -> None:
        """Add the [N, h, w] maps of whole good acquisitions (patch order)."""
        maps = fused_maps(anomaly_maps, self.layout, self.fuse_frames, self.smooth_sigma,
                          self.smooth_after_fusion).astype(np.float64)
        per_region = maps.transpose(3, 0, 1, 2, 4, 5).reshape(self.layout.regions, -1, *maps.shape[-2:])
        if self._sum is None:
            self._sum = np.zeros((self.layout.regions, *maps.shape[-2:]))
            self._sum_sq = np.zeros_like(self._sum)
        assert self._sum_sq is not None
        self._sum += per_region.sum(axis=1)
        self._sum_sq += (per_region * per_region).sum(axis=1)
        self.samples += per_region.shape[1]
        rows = per_region.transpose(0, 2, 1, 3).reshape(self.layout.regions, per_region.shape[2], -1)
        pool = rows if self._top is None else np.concatenate([self._top, rows], axis=-1)
        keep = min(ROW_TAIL_KEPT, pool.shape[-1])
        largest = -np.partition(-pool, keep - 1, axis=-1)[..., :keep]
        self._top = -np.sort(-largest, axis=-1)

    def model(self, floor_quantile: float = 0.5, dilate: int = 1, row_quantile: float | None = None,
              row_floor: float = 1e-4) -> LocalScoreModel:
        """The statistics so far as a LocalScoreModel (scale floored at the region's std quantile,
        mean and scale taken as their maximum over ``dilate`` x ``dilate`` pixels); with
        ``row_quantile``, the maps are first divided by each row's tail: that quantile of every
        good value in the row (all vials, columns and acquisitions), at least ``row_floor``."""
        if self._sum is None or self._sum_sq is None or self._top is None or self.samples < 2:
            raise CalibrationError("the local score needs good acquisitions to measure what good looks like; "
                                   "the calibration kit has none")
        mean = self._sum / self.samples
        std = np.sqrt(np.maximum(self._sum_sq / self.samples - mean * mean, 0.0))
        row_scale = None
        if row_quantile is not None:
            width = self._sum.shape[-1]
            tail = _upper_quantile(self._top, self.samples * width, row_quantile)       # [regions, h]
            row_scale = np.maximum(tail, row_floor).astype(np.float32)
            mean, std = mean / row_scale[..., None], std / row_scale[..., None]  # the same maps, divided
        floor = np.quantile(std.reshape(self.layout.regions, -1), floor_quantile, axis=1)[:, None, None]
        scale = np.sqrt(_dilate(std, dilate) ** 2 + np.maximum(floor, 1e-6) ** 2)
        return LocalScoreModel(self.layout, self.fuse_frames, _dilate(mean, dilate).astype(np.float32),
                               scale.astype(np.float32), self.smooth_sigma, self.anomaly_map,
                               self.smooth_after_fusion, row_scale)
