"""vialguard.strip_reference in TensorFlow, for the served `inspector` graph.

Same arithmetic as the numpy reference (tested against it): the patches of each
vial stacked into its column, blurred (symmetric padding), the strip's rotation found
by trying every shift of the grid between neighbouring vials at half resolution (in
the liquid region, the difference of the vials' meniscus rows instead), the
other vials' min/max over the tolerance window shifted onto each vial, and the
distance outside that range, least over the other vials. Only pad, conv, max pool,
gather, reshape and elementwise ops: tf2onnx exports them as plain ONNX.
"""
from __future__ import annotations

import numpy as np
import tensorflow as tf

from vialguard.local_score import PatchLayout
from vialguard.strip_reference import SSIM_CROP, StripReferenceParams, _gaussian


def _blur(x: tf.Tensor, sigma: float) -> tf.Tensor:
    """[B, H, W] separable Gaussian with symmetric padding."""
    if sigma <= 0:
        return x
    k = _gaussian(sigma)
    r = k.size // 2
    y = tf.pad(x[..., None], [[0, 0], [r, r], [r, r], [0, 0]], mode="SYMMETRIC")
    y = tf.nn.conv2d(y, tf.constant(k.reshape(-1, 1, 1, 1)), strides=1, padding="VALID")
    y = tf.nn.conv2d(y, tf.constant(k.reshape(1, -1, 1, 1)), strides=1, padding="VALID")
    return y[..., 0]


def _shift_static(x: tf.Tensor, dy: float) -> tf.Tensor:
    """out[..., y, :] = x[..., y + dy, :] for a constant dy (linear, edge rows repeated), axis -2."""
    h = int(x.shape[-2])
    n = int(np.floor(dy))
    frac = float(dy - n)
    rows = np.arange(h)
    lo = tf.gather(x, np.clip(rows + n, 0, h - 1), axis=-2)
    if frac == 0.0:
        return lo
    hi = tf.gather(x, np.clip(rows + n + 1, 0, h - 1), axis=-2)
    return lo * (1.0 - frac) + hi * frac


def _shift_dynamic(x: tf.Tensor, dy: tf.Tensor) -> tf.Tensor:
    """x [A, F, H, W] with out[a, :, y] = x[a, :, y + dy[a]] (dy [A] float32; linear, edges repeated)."""
    a, f, h, w = tf.shape(x)[0], int(x.shape[1]), int(x.shape[2]), int(x.shape[3])
    n = tf.floor(dy)
    frac = (dy - n)[:, None, None, None]
    rows = tf.range(h, dtype=tf.int32)[None, :] + tf.cast(n, tf.int32)[:, None]    # [A, H]
    base = (tf.range(a, dtype=tf.int32) * h)[:, None]
    flat = tf.reshape(tf.transpose(x, [0, 2, 1, 3]), [-1, f * w])                    # [A*H, F*W]

    def take(r: tf.Tensor) -> tf.Tensor:
        got = tf.gather(flat, tf.reshape(base + tf.clip_by_value(r, 0, h - 1), [-1]))
        return tf.transpose(tf.reshape(got, [a, h, f, w]), [0, 2, 1, 3])

    return take(rows) * (1.0 - frac) + take(rows + 1) * frac


def _window(x: tf.Tensor, size: int, reduce: str) -> tf.Tensor:
    """[B, H, W] min or max over size x size, shrinking at the edges (max pool, SAME)."""
    y = x[..., None] if reduce == "max" else -x[..., None]
    y = tf.nn.max_pool2d(y, ksize=size, strides=1, padding="SAME")[..., 0]
    return y if reduce == "max" else -y


def strip_maps_tf(patches: tf.Tensor, layout: PatchLayout, params: StripReferenceParams) -> tf.Tensor:
    """[N, P, P, 1] patches in [0, 1], whole acquisitions in patch order -> [N, P-10, P-10] maps."""
    p = int(patches.shape[1])
    f, v, r = layout.frames, layout.vials, layout.regions
    h = r * p
    x = tf.cast(patches, tf.float32)[..., 0]
    cols = tf.reshape(_blur(tf.reshape(tf.reshape(x, [-1, f, v, h, p]), [-1, h, p]), params.sigma), [-1, f, v, h, p])
    small = cols[:, :, :, ::2, ::2]
    costs = tf.stack([tf.reduce_mean(tf.abs(small[:, :, :-1] - _shift_static(small[:, :, 1:], float(s) / 2)),
                                     axis=[1, 2, 3, 4]) for s in params.steps], axis=1)          # [A, steps]
    step = tf.gather(tf.constant(params.steps), tf.argmin(costs, axis=1, output_type=tf.int32))  # [A]
    flat = tf.reshape(cols, [-1, h, p])
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

    def by_frame(x: tf.Tensor, dy: tf.Tensor) -> tf.Tensor:  # x [A, F, H, W], dy [A, F]
        return tf.reshape(_shift_dynamic(tf.reshape(x, [-1, 1, h, p]), tf.reshape(dy, [-1])), [-1, f, h, p])

    def aligned(x: tf.Tensor, o: int, i: int) -> tf.Tensor:
        """Vial o's x moved onto vial i: by the rotation, and in the liquid region by the menisci."""
        rotated = _shift_dynamic(x, step * float(o - i))
        if liquid < 0:
            return rotated
        by_level = by_frame(x, tf.cast(menisci[:, :, o] - menisci[:, :, i], tf.float32))
        return tf.concat([rotated[:, :, :top], by_level[:, :, top:top + p], rotated[:, :, top + p:]], axis=2)

    per_vial = []
    for i in range(v):
        best = None
        for o in range(v):
            if o == i:
                continue
            lo, hi = aligned(lows[:, :, o], o, i), aligned(highs[:, :, o], o, i)
            own = cols[:, :, i]
            d = tf.maximum(tf.maximum(lo - own, own - hi), 0.0)
            best = d if best is None else tf.minimum(best, d)
        per_vial.append(best)
    maps = tf.stack(per_vial, axis=2)                                                            # [A, F, V, H, W]
    maps = tf.reshape(maps, [-1, p, p])
    return maps[:, SSIM_CROP:p - SSIM_CROP, SSIM_CROP:p - SSIM_CROP]
