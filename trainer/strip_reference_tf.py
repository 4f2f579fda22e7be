"""vialguard.strip_reference in TensorFlow, for the served `inspector` graph.

Same arithmetic as the numpy reference (tested against it): the patches of each
vial stacked into its column, blurred (symmetric padding), scaled to the strip's mean
brightness for the comparison, the strip's rotation found (on the unscaled columns)
by trying every shift of the grid between neighbouring vials at half resolution (in
the liquid region, the difference of the vials' meniscus rows instead), the
other vials' min/max over the tolerance window shifted onto each vial, and the
distance outside that range, least over the other vials. Only pad, slices, max pool,
gather, reshape and elementwise ops: tf2onnx exports them as plain ONNX.
"""
from __future__ import annotations

import numpy as np
import tensorflow as tf

from trainer.separable_tf import filter_side_by_side
from vialguard.local_score import PatchLayout, smoothing_kernel
from vialguard.strip_reference import LIGHT_EPS, SSIM_CROP, StripReferenceParams


def _blur(x: tf.Tensor, sigma: float, group: int) -> tf.Tensor:
    """[B, H, W] separable Gaussian with symmetric padding; B a multiple of ``group``.

    ``group`` images at a time are the channels of one depthwise convolution
    (trainer.separable_tf); weighted slices cost more than the blur itself (measured on a
    busy machine, the 15 columns of an acquisition on 2 threads: 112 ms as slices, 24 ms
    grouped)."""
    if sigma <= 0:
        return x
    k = smoothing_kernel(sigma)
    r = k.size // 2
    padded = _symmetric(_symmetric(x, r, axis=1), r, axis=2)                       # [B, H + 2r, W + 2r]
    return filter_side_by_side(padded, k, group, "VALID")


def _symmetric(x: tf.Tensor, r: int, axis: int) -> tf.Tensor:
    """tf.pad 'SYMMETRIC' by r on one axis, built from reversed edge slices (tf2onnx turns the
    padding itself into a reflect pad plus a Compress that costs more than the blur)."""
    n = int(x.shape[axis])
    head = tf.reverse(tf.gather(x, list(range(r)), axis=axis), axis=[axis])
    tail = tf.reverse(tf.gather(x, list(range(n - r, n)), axis=axis), axis=[axis])
    return tf.concat([head, x, tail], axis=axis)


def _shift_static(x: tf.Tensor, dy: float) -> tf.Tensor:
    """out[..., y, :] = x[..., y + dy, :] for a constant dy (linear, edge rows repeated), axis -2.

    Slices and edge rows, no gather: the rotation search runs it 29 times."""
    h = int(x.shape[-2])
    n = int(np.floor(dy))
    frac = float(dy - n)

    def rows_from(k: int) -> tf.Tensor:  # x[..., clip(y + k), :]
        if k >= 0:
            k = min(k, h - 1)
            return tf.concat([x[..., k:, :]] + [x[..., h - 1:, :]] * k, axis=-2) if k else x
        k = min(-k, h - 1)
        return tf.concat([x[..., :1, :]] * k + [x[..., :h - k, :]], axis=-2)

    lo = rows_from(n)
    return lo if frac == 0.0 else lo * (1.0 - frac) + rows_from(n + 1) * frac


def _shift_dynamic(x: tf.Tensor, dy: tf.Tensor, rows: tuple[int, int] | None = None,
                   whole: bool = False) -> tf.Tensor:
    """x [B, F, H, W] with out[b, :, y] = x[b, :, y + dy[b]] (dy [B] float32; linear, edges repeated).

    ``rows`` (first, last): only those output rows are made, read from anywhere in x.
    ``whole``: dy holds whole pixels, so the row below would weigh exactly 0 and is not
    read (the same numbers at a third of the cost)."""
    b, f, h, w = tf.shape(x)[0], int(x.shape[1]), int(x.shape[2]), int(x.shape[3])
    first, last = rows or (0, h)
    n = tf.floor(dy)
    frac = tf.reshape(dy - n, [-1, 1, 1, 1])
    wanted = tf.range(first, last, dtype=tf.int32)[None, None, :]                              # [1, 1, R]
    base = (tf.range(b * f, dtype=tf.int32) * h)[:, None]
    flat = tf.reshape(x, [-1, w])                                                              # [B*F*H, W]
    shift = tf.repeat(tf.cast(n, tf.int32), f)[:, None, None]                                  # [B*F, 1, 1]

    def take(k: int) -> tf.Tensor:
        index = tf.clip_by_value(wanted + shift + k, 0, h - 1)[:, 0] + base                    # [B*F, R]
        return tf.reshape(tf.gather(flat, tf.reshape(index, [-1])), [b, f, last - first, w])

    if whole:
        return take(0)
    return take(0) * (1.0 - frac) + take(1) * frac


def _window(x: tf.Tensor, size: int, reduce: str) -> tf.Tensor:
    """[B, H, W] min or max over size x size, shrinking at the edges (max pool, SAME)."""
    y = x[..., None] if reduce == "max" else -x[..., None]
    y = tf.nn.max_pool2d(y, ksize=size, strides=1, padding="SAME")[..., 0]
    return y if reduce == "max" else -y


def _liquid_in_meniscus_rows(maps: tf.Tensor, menisci: tf.Tensor, top: int, p: int, reference: int) -> tf.Tensor:
    """vialguard.strip_reference.reference_shifts + shift_whole_rows: maps [A, F, V, H, W] with each
    vial's liquid rows [top, top + p) read from y + dy (dy: its mean meniscus over the frames, rounded,
    minus the reference row), zeros beyond; one gather for the acquisition's vials. ``menisci``
    [A, F, V] are rows of the liquid region."""
    f, v, w = int(maps.shape[1]), int(maps.shape[2]), int(maps.shape[4])
    mean = tf.reduce_mean(tf.cast(menisci, tf.float32), axis=1)                                 # [A, V]
    dy = tf.cast(tf.floor(mean + 0.5), tf.int32) - reference                                    # [A, V]
    block = tf.transpose(maps[:, :, :, top:top + p], [0, 2, 1, 3, 4])                           # [A, V, F, p, W]
    source = tf.range(p, dtype=tf.int32)[None, None, None, :] + dy[:, :, None, None]            # [A, V, 1, p]
    inside = tf.cast((source >= 0) & (source < p), maps.dtype)
    a = tf.shape(maps)[0]
    base = tf.reshape(tf.range(a * v * f, dtype=tf.int32) * p, [a, v, f, 1])
    index = tf.reshape(base + tf.clip_by_value(source, 0, p - 1), [-1])                         # [A*V*F*p]
    moved = tf.reshape(tf.gather(tf.reshape(block, [-1, w]), index), [a, v, f, p, w])
    moved = tf.transpose(moved * inside[..., None], [0, 2, 1, 3, 4])                            # [A, F, V, p, W]
    parts = [maps[:, :, :, :top] if top else None, moved, maps[:, :, :, top + p:] if top + p < int(maps.shape[3])
             else None]
    return tf.concat([t for t in parts if t is not None], axis=3)


def strip_maps_tf(patches: tf.Tensor, layout: PatchLayout, params: StripReferenceParams) -> tf.Tensor:
    """[N, P, P, 1] patches in [0, 1], whole acquisitions in patch order -> [N, P-10, P-10] maps."""
    p = int(patches.shape[1])
    params = params.at_side(p)  # the settings are in native pixels; a resampled profile scales them
    f, v, r = layout.frames, layout.vials, layout.regions
    h = r * p
    x = tf.cast(patches, tf.float32)[..., 0]
    cols = tf.reshape(_blur(tf.reshape(tf.reshape(x, [-1, f, v, h, p]), [-1, h, p]), params.sigma, f * v),
                      [-1, f, v, h, p])
    seen = cols  # what is compared; the rotation and the menisci are found on the columns as blurred
    if params.equalise_light:  # vialguard.strip_reference.equalise_light
        # row means first, then their mean: two short float32 sums, close to the reference's float64 mean
        # (one sum of 262,144 pixels in ONNX Runtime drifted by 1e-5, which the tiny scale of quiet pixels
        # turned into 0.1 z)
        mean = tf.reduce_mean(tf.reduce_mean(cols, axis=4), axis=3)                             # [A, F, V]
        gain = tf.reduce_mean(mean, axis=2, keepdims=True) / tf.maximum(mean, LIGHT_EPS)
        seen = cols * gain[..., None, None]
    small = tf.reshape(cols, [-1, f, v, h // 2, 2, p // 2, 2])[:, :, :, :, 0, :, 0]  # = [..., ::2, ::2]
    costs = tf.stack([tf.reduce_mean(tf.abs(small[:, :, :-1] - _shift_static(small[:, :, 1:], float(s) / 2)),
                                     axis=[1, 2, 3, 4]) for s in params.steps], axis=1)          # [A, steps]
    step = tf.gather(tf.constant(params.steps), tf.argmin(costs, axis=1, output_type=tf.int32))  # [A]
    flat = tf.reshape(seen, [-1, h, p])
    lows = tf.reshape(_window(flat, params.tolerance, "min"), [-1, f, v, h, p])
    highs = tf.reshape(_window(flat, params.tolerance, "max"), [-1, f, v, h, p])
    liquid = params.liquid_region
    if liquid >= r:
        raise ValueError(f"the liquid region R{liquid} is not among the {r} regions")
    if liquid >= 0:
        first, last = params.meniscus_rows
        top, c, half = liquid * p, p // 2, params.meniscus_half_width
        profile = tf.reduce_mean(cols[:, :, :, top + first:top + last, c - half:c + half], axis=-1)
        menisci = tf.argmin(profile, axis=-1, output_type=tf.int32)                             # [A, F, V]

    def aligned(x: tf.Tensor, o: int, i: int) -> tf.Tensor:
        """Vial o's x [A, F, H, W] moved onto vial i: by the rotation, and in the liquid region
        by the menisci (whole rows)."""
        if liquid < 0:
            return _shift_dynamic(x, step * float(o - i))
        dy = tf.cast(menisci[:, :, o] - menisci[:, :, i], tf.float32)                         # [A, F]
        by_level = tf.reshape(_shift_dynamic(tf.reshape(x, [-1, 1, h, p]), tf.reshape(dy, [-1]), (top, top + p),
                                             whole=True), [-1, f, p, p])
        parts = [_shift_dynamic(x, step * float(o - i), (0, top)) if top else None, by_level,
                 _shift_dynamic(x, step * float(o - i), (top + p, h)) if top + p < h else None]
        return tf.concat([t for t in parts if t is not None], axis=2)

    per_vial = []
    for i in range(v):
        best = None
        own = seen[:, :, i]
        for o in range(v):
            if o == i:
                continue
            lo, hi = aligned(lows[:, :, o], o, i), aligned(highs[:, :, o], o, i)
            d = tf.maximum(tf.maximum(lo - own, own - hi), 0.0)
            best = d if best is None else tf.minimum(best, d)
        per_vial.append(best)
    maps = tf.stack(per_vial, axis=2)                                                            # [A, F, V, H, W]
    if liquid >= 0 and params.liquid_reference_row >= 0:
        maps = _liquid_in_meniscus_rows(maps, menisci + first, top, p, params.liquid_reference_row)
    maps = tf.reshape(maps, [-1, p, p])
    return maps[:, SSIM_CROP:p - SSIM_CROP, SSIM_CROP:p - SSIM_CROP]
