"""Turn a product, a run and its frame states into 8-bit camera frames.

Back-lit, telecentric: the camera sees the backlight through the strip, so the
image is backlight x transmission. Transmission is built in product coordinates
(plastic walls darker where the line of sight grazes them, liquid slightly darker
with a bright axis, a dark meniscus band, bubbles and drops as dark rings) and
then moved to camera coordinates with the run's pose, so defects move with the
vial. Light (gain, offset, gradient) and sensor noise (read + shot) are applied in
camera coordinates. Everything that does not change between frames is computed
once per product (layers) or once per run (light, pose).
"""
from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from vialguard.recipe import Recipe
from vialguard.simulator.defects import DefectSpec, edit_outline, is_outline_kind, surface_effect
from vialguard.simulator.handling import FrameState, RunConditions, frame_state, pose_matrix
from vialguard.simulator.strip import ROW_PLATE, ROW_SOLID, ROW_TUBE, ProductShape, VialProfile

MENISCUS_RISE_PX = 8.0
MENISCUS_BAND_PX = 6.0
PLATE_PATH_PX = 7.0


@dataclass
class ProductLayers:
    """Transmission of one product with its defects, in product coordinates, without and with liquid."""

    empty: np.ndarray  # float32 [H, W]
    full: np.ndarray  # float32 [H, W]
    cavity: np.ndarray  # float32 [H, W], 1 inside the hollow of a vial
    col_vial: np.ndarray  # int [W], vial owning the column or -1
    col_d: np.ndarray  # float32 [W], offset from that vial's axis
    col_rise: np.ndarray  # float32 [W], meniscus climb towards the wall
    masks: list[np.ndarray]  # bool [H, W] per defect, product coordinates


@dataclass
class Acquisition:
    """A rendered acquisition: frames, per-defect masks in camera coordinates, frame states."""

    frames: np.ndarray  # uint8 [n_frames, H, W]
    masks: list[np.ndarray]  # bool [H, W]
    states: list[FrameState]


def _paste(dst: np.ndarray, y0: int, x0: int, window: np.ndarray, op: str) -> None:
    """Combine a window into a frame-sized array, clipped at the frame's borders."""
    h, w = dst.shape
    ya, xa = max(y0, 0), max(x0, 0)
    yb, xb = min(y0 + window.shape[0], h), min(x0 + window.shape[1], w)
    if ya >= yb or xa >= xb:
        return
    part = window[ya - y0 : yb - y0, xa - x0 : xb - x0]
    if op == "mul":
        dst[ya:yb, xa:xb] *= part
    else:
        dst[ya:yb, xa:xb] |= part


class StripRenderer:
    """Renders strips for one recipe; holds the coordinate grids it reuses."""

    def __init__(self, recipe: Recipe) -> None:
        self.recipe = recipe
        self.height, self.width = recipe.frame_height, recipe.frame_width
        self._ys = (np.arange(self.height, dtype=np.float32) + 0.5)[:, None]
        self._xs = np.arange(self.width, dtype=np.float32) + 0.5

    # ---- product level -------------------------------------------------------------------
    def _emboss(self, prof: VialProfile, d: np.ndarray, rows: slice) -> np.ndarray:
        """Moulded relief on the flag (a ring and two text bars): extra path through plastic."""
        lay = prof.layout
        y = self._ys[rows]
        cy = (lay.flag_top + lay.flag_bottom) / 2 - 0.04 * lay.width
        ring = np.abs(np.hypot(d, y - cy) - 0.10 * lay.width) < 2.0
        bars = (np.abs(d) < 0.18 * lay.width) & (
            (np.abs(y - (cy + 0.17 * lay.width)) < 2.5) | (np.abs(y - (cy + 0.24 * lay.width)) < 2.5)
        )
        return (ring | bars).astype(np.float32) * 5.0

    def _vial_band(self, product: ProductShape, prof: VialProfile, empty: np.ndarray, full: np.ndarray,
                   cavity: np.ndarray) -> None:
        lay = prof.layout
        cols = slice(lay.x0, lay.x0 + lay.width)
        d = self._xs[cols][None, :] - np.float32(lay.cx)
        radius = np.where(d < 0, prof.half_left[:, None], prof.half_right[:, None])
        flash = np.where(d < 0, prof.flash_left[:, None], prof.flash_right[:, None])
        wall, kind = prof.wall[:, None], prof.kind[:, None]
        ad = np.abs(d)
        inside = radius + flash - ad  # distance to the outline, flash included
        outer = np.sqrt(np.maximum(radius**2 - d**2, 0))
        r_in = radius - wall
        inner = np.sqrt(np.maximum(r_in**2 - d**2, 0))
        path = np.where(kind == ROW_TUBE, 2 * (outer - inner), 0).astype(np.float32)
        path += np.where(kind == ROW_SOLID, 1.2 * outer, 0)
        path += np.where(kind == ROW_PLATE, PLATE_PATH_PX, 0)
        beyond = ad - radius  # a bump of solid flash: the chord through a half-disc on the outline
        path = np.where(beyond > 0, 2 * np.sqrt(np.maximum(flash**2 - beyond**2, 0)), path)
        flag_rows = np.nonzero(prof.kind == ROW_PLATE)[0]
        if flag_rows.size:
            rows = slice(int(flag_rows[0]), int(flag_rows[-1]) + 1)
            path[rows] += self._emboss(prof, d, rows)
        rim = 1.0 - 0.8 * np.exp(-np.maximum(inside, 0) / 3.0)  # refraction darkens the outline
        t_in = product.plastic_clarity * np.exp(-product.wall_absorption * path) * rim
        cover = np.clip(inside + 0.5, 0, 1) * (kind != 0)
        band_empty = 1.0 - cover * (1.0 - t_in)
        hollow = np.clip(r_in - ad + 0.5, 0, 1) * (kind == ROW_TUBE)
        q = np.clip(1.0 - (d / np.maximum(r_in, 1.0)) ** 2, 0, 1)
        sq = np.sqrt(q)
        liquid = np.exp(-product.liquid_absorption * 2 * r_in * sq) * (0.80 + 0.20 * sq)
        liquid = liquid + 0.10 * np.exp(-((d / np.maximum(0.12 * r_in, 1.0)) ** 2))
        liquid *= 1.0 - 0.5 * np.exp(-np.maximum(r_in - ad, 0) / 2.5)
        empty[:, cols] = band_empty
        full[:, cols] = band_empty * (1.0 - hollow * (1.0 - liquid))
        cavity[:, cols] = hollow

    def product_layers(self, product: ProductShape, defects: list[DefectSpec]) -> ProductLayers:
        """Transmission of the product with its defects; computed once, reused by every run."""
        h, w = self.height, self.width
        profiles = list(product.vials)
        masks: list[np.ndarray] = []
        surface: list[tuple[int, DefectSpec]] = []
        for i, spec in enumerate(defects):
            masks.append(np.zeros((h, w), bool))
            if is_outline_kind(spec.kind):
                profiles[spec.vial], effect = edit_outline(profiles[spec.vial], spec)
                _paste(masks[i], effect.y0, effect.x0, effect.mask, "or")
            else:
                surface.append((i, spec))
        empty = np.ones((h, w), np.float32)
        full = np.ones((h, w), np.float32)
        cavity = np.zeros((h, w), np.float32)
        col_vial = np.full(w, -1, np.int64)
        col_d = np.zeros(w, np.float32)
        col_rise = np.zeros(w, np.float32)
        for v, prof in enumerate(profiles):
            self._vial_band(product, prof, empty, full, cavity)
            cols = slice(prof.layout.x0, prof.layout.x0 + prof.layout.width)
            d = self._xs[cols] - np.float32(prof.layout.cx)
            r_in = prof.inner_radius(int(prof.fill_level))
            col_vial[cols], col_d[cols] = v, d
            col_rise[cols] = MENISCUS_RISE_PX * np.clip(np.abs(d) / max(r_in, 1.0), 0, 1) ** 6
        for i, spec in surface:
            effect = surface_effect(spec)
            assert effect.transmission is not None
            _paste(empty, effect.y0, effect.x0, effect.transmission, "mul")
            _paste(full, effect.y0, effect.x0, effect.transmission, "mul")
            _paste(masks[i], effect.y0, effect.x0, effect.mask, "or")
        return ProductLayers(empty, full, cavity, col_vial, col_d, col_rise, masks)

    # ---- frame level ---------------------------------------------------------------------
    def transmission(self, layers: ProductLayers, state: FrameState) -> np.ndarray:
        """Product-coordinate transmission of one frame: liquid up to the meniscus, bubbles, drops."""
        h = self.height
        levels = np.array(state.levels, np.float32).reshape(-1, 2)
        owned = layers.col_vial >= 0
        ym = np.full(self.width, h + 100.0, np.float32)
        v = layers.col_vial[owned]
        ym[owned] = levels[v, 0] + levels[v, 1] * layers.col_d[owned] - layers.col_rise[owned]
        lo = int(np.clip(np.floor(ym.min()) - 1, 0, h))
        hi = int(np.clip(np.ceil(ym[owned].max() if owned.any() else 0) + MENISCUS_BAND_PX + 4, lo, h))
        out = np.empty_like(layers.empty)
        out[:lo] = layers.empty[:lo]
        out[hi:] = layers.full[hi:]
        t = self._ys[lo:hi] - ym[None, :]
        out[lo:hi] = np.where(t >= 0, layers.full[lo:hi], layers.empty[lo:hi])
        half = MENISCUS_BAND_PX / 2
        band = 0.55 * np.exp(-(((t - half) / half) ** 4)) - 0.08 * np.exp(-((t - MENISCUS_BAND_PX - 1.5) ** 2))
        out[lo:hi] *= 1.0 - band * layers.cavity[lo:hi]
        for b in state.blobs:
            size = int(max(b.rx, b.ry) * 1.3) + 3
            y0, x0 = int(b.y) - size, int(b.x) - size
            yy, xx = np.mgrid[y0 : y0 + 2 * size + 1, x0 : x0 + 2 * size + 1].astype(np.float32) + 0.5
            r = 0.5 * (b.rx + b.ry)
            rho = np.hypot((xx - b.x) / b.rx, (yy - b.y) / b.ry) * r
            dark = b.contrast * np.exp(-(((rho - 0.8 * r) / (0.35 * r + 0.6)) ** 2))
            ya, xa = max(y0, 0), max(x0, 0)
            cav = layers.cavity[ya : y0 + 2 * size + 1, xa : x0 + 2 * size + 1]
            win = 1.0 - dark[ya - y0 : ya - y0 + cav.shape[0], xa - x0 : xa - x0 + cav.shape[1]] * cav
            _paste(out, ya, xa, win.astype(np.float32), "mul")
        return out

    def light(self, run: RunConditions) -> np.ndarray:
        """Backlight seen by the camera in this run: gain and a gentle gradient."""
        gx = (self._xs / self.width - 0.5) * 2 * run.grad_x
        gy = (self._ys / self.height - 0.5) * 2 * run.grad_y
        return (np.float32(run.gain) * (1.0 + gx[None, :] + gy)).astype(np.float32)

    def to_camera(self, image: np.ndarray, matrix: np.ndarray, fill: float) -> np.ndarray:
        return cv2.warpAffine(image, matrix, (self.width, self.height), flags=cv2.INTER_LINEAR,
                              borderMode=cv2.BORDER_CONSTANT, borderValue=fill)

    def expose(self, transmission_cam: np.ndarray, light255: np.ndarray, run: RunConditions,
               noise: np.ndarray | None) -> np.ndarray:
        """Grey levels of one frame: light x transmission + offset + sensor noise, rounded to 8 bits.

        ``light255`` is :meth:`light` scaled to grey levels; ``noise`` is the frame's noise in grey
        levels (see :meth:`noise_sigma`), or None for a clean frame.
        """
        grey = light255 * transmission_cam
        grey += np.float32(run.offset * 255.0 + 0.5)  # + 0.5: the cast below truncates
        if noise is not None:
            grey += noise
        np.clip(grey, 0, 255, out=grey)
        return grey.astype(np.uint8)

    def noise_sigma(self, clean_grey: np.ndarray, run: RunConditions) -> np.ndarray:
        """Per-pixel sensor noise (read + shot) in grey levels for the run's light level."""
        return np.sqrt(np.float32(run.read_noise**2) + np.float32(run.shot_gain) * np.maximum(clean_grey, 0))

    def render_acquisition(self, product: ProductShape, layers: ProductLayers, run: RunConditions,
                           noise: bool = True) -> Acquisition:
        """All frames of one acquisition and the defect masks in this run's pose."""
        n = self.recipe.frames_per_acquisition
        h, w = self.height, self.width
        matrix = pose_matrix(self.recipe, run)
        light255 = self.light(run) * np.float32(255.0)
        rng = np.random.default_rng(run.noise_seed)
        # One bank of Gaussian noise per run, read at a random offset per frame: each pixel gets
        # a fresh draw in every frame at an eighth of the cost of 16 full draws. Shot noise
        # follows the light level of the first frame (bubbles change it by a few grey levels).
        bank = rng.standard_normal(2 * h * w, dtype=np.float32) if noise else None
        frames = np.empty((n, h, w), np.uint8)
        states = []
        sigma: np.ndarray | None = None
        for f in range(n):
            state = frame_state(product, run, f, n)
            states.append(state)
            t_cam = self.to_camera(self.transmission(layers, state), matrix, 1.0)
            frame_noise = None
            if bank is not None:
                if sigma is None:
                    sigma = self.noise_sigma(light255 * t_cam, run)
                offset = int(rng.integers(0, h * w))
                frame_noise = sigma * bank[offset : offset + h * w].reshape(h, w)
            frames[f] = self.expose(t_cam, light255, run, frame_noise)
        return Acquisition(frames, self.masks_in_camera(layers, run), states)

    def masks_in_camera(self, layers: ProductLayers, run: RunConditions) -> list[np.ndarray]:
        """The product's defect masks moved to this run's pose (what the dataset stores)."""
        matrix = pose_matrix(self.recipe, run)
        return [self.to_camera(m.astype(np.float32), matrix, 0.0) > 0.25 for m in layers.masks]
