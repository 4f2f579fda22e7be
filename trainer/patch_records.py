"""One patch as one tf.train.Example: the record layout shared by ingest and pipeline.

Pixels are stored as raw bytes (no PNG), row-major, one channel, quantised to
the recipe's bit depth: ``round(patch * 255)`` as uint8 for MONO8 recipes,
``round(patch * 65535)`` as little-endian uint16 for MONO16. For a MONO8 frame
cut at the recipe's own patch size this is lossless (the patch is exactly
``pixel / 255``); when a profile resizes the region (INTER_AREA), the stored
value is off by at most half a grey level (<= 1/510), far below what the SSIM
score resolves. Raw bytes cost no decode CPU in the input pipeline, which is
where a GPU trainer starves first.

The writer (:func:`encode_patch`) and the reader (:func:`parse_batch`) are
kept in this one file so the feature names cannot drift apart.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

# Feature names; every record carries all of them.
PATCH = "patch"
HEIGHT = "height"
WIDTH = "width"
PRODUCT_ID = "product_id"
ACQUISITION_ID = "acquisition_id"
RUN_INDEX = "run_index"
FRAME_SLOT = "frame_slot"  # position among the images ingested for the acquisition
FRAME_INDEX = "frame_index"  # index in the 16-frame acquisition; -1 for a rank image
IMAGE_KIND = "image_kind"  # "frame", "rank_min" or "rank_max"
VIAL = "vial"
REGION = "region"
LABEL = "label"  # 1 when this patch shows a defect
ACQUISITION_LABEL = "acquisition_label"  # 1 when the acquisition is of a defective product

INT_FEATURES = (HEIGHT, WIDTH, RUN_INDEX, FRAME_SLOT, FRAME_INDEX, VIAL, REGION, LABEL, ACQUISITION_LABEL)
STRING_FEATURES = (PRODUCT_ID, ACQUISITION_ID, IMAGE_KIND)
METADATA_FEATURES = STRING_FEATURES + INT_FEATURES

PIXEL_DTYPES = {8: "uint8", 16: "uint16"}


@dataclass(frozen=True)
class PatchMeta:
    """Where one patch comes from and what it shows."""

    product_id: str
    acquisition_id: str
    run_index: int
    frame_slot: int
    frame_index: int
    image_kind: str
    vial: int
    region: int
    label: int
    acquisition_label: int


def quantise(patches: np.ndarray, bit_depth: int) -> np.ndarray:
    """float [N,P,P,1] in [0, 1] -> uint8/uint16 [N,P,P,1], rounded to the nearest level."""
    if bit_depth not in PIXEL_DTYPES:
        raise ValueError(f"bit depth must be 8 or 16, got {bit_depth}")
    top = (1 << bit_depth) - 1
    return np.rint(np.clip(patches, 0.0, 1.0) * top).astype(PIXEL_DTYPES[bit_depth])


def encode_patch(pixels: np.ndarray, meta: PatchMeta) -> bytes:
    """Serialise one quantised patch [P,P] or [P,P,1] and its metadata."""
    import tensorflow as tf  # imported here so that writing metadata-only tools stays light

    pixels = np.ascontiguousarray(pixels.reshape(pixels.shape[0], pixels.shape[1]))
    raw = pixels.astype(pixels.dtype.newbyteorder("<"), copy=False).tobytes()

    def ints(value: int) -> tf.train.Feature:
        return tf.train.Feature(int64_list=tf.train.Int64List(value=[int(value)]))

    def text(value: str) -> tf.train.Feature:
        return tf.train.Feature(bytes_list=tf.train.BytesList(value=[value.encode()]))

    feature = {
        PATCH: tf.train.Feature(bytes_list=tf.train.BytesList(value=[raw])),
        HEIGHT: ints(pixels.shape[0]),
        WIDTH: ints(pixels.shape[1]),
        PRODUCT_ID: text(meta.product_id),
        ACQUISITION_ID: text(meta.acquisition_id),
        RUN_INDEX: ints(meta.run_index),
        FRAME_SLOT: ints(meta.frame_slot),
        FRAME_INDEX: ints(meta.frame_index),
        IMAGE_KIND: text(meta.image_kind),
        VIAL: ints(meta.vial),
        REGION: ints(meta.region),
        LABEL: ints(meta.label),
        ACQUISITION_LABEL: ints(meta.acquisition_label),
    }
    return tf.train.Example(features=tf.train.Features(feature=feature)).SerializeToString()


def feature_spec() -> dict:
    """The tf.io parsing spec of a record."""
    import tensorflow as tf

    spec = {PATCH: tf.io.FixedLenFeature([], tf.string)}
    spec.update({name: tf.io.FixedLenFeature([], tf.int64) for name in INT_FEATURES})
    spec.update({name: tf.io.FixedLenFeature([], tf.string) for name in STRING_FEATURES})
    return spec


def parse_batch(serialized, patch_size: int, bit_depth: int, with_metadata: bool):  # noqa: ANN001, ANN201
    """Parse a batch of serialised records into float32 [B,P,P,1] in [0, 1] (and metadata).

    Parsing a whole batch at once (``tf.io.parse_example``) is several times
    cheaper than one record at a time.
    """
    import tensorflow as tf

    spec = feature_spec() if with_metadata else {PATCH: tf.io.FixedLenFeature([], tf.string)}
    parsed = tf.io.parse_example(serialized, spec)
    dtype = tf.uint8 if bit_depth == 8 else tf.uint16
    pixels = tf.io.decode_raw(parsed[PATCH], dtype, little_endian=True)
    # Divide, as vialguard.patching.to_unit_float does: multiplying by 1/255 leaves
    # half of the grey levels 1 ulp away from what the line's patches hold.
    top = tf.constant(float((1 << bit_depth) - 1), tf.float32)
    patches = tf.reshape(tf.cast(pixels, tf.float32) / top, [-1, patch_size, patch_size, 1])
    patches.set_shape(serialized.shape.concatenate([patch_size, patch_size, 1]))  # keep a static batch
    if not with_metadata:
        return patches
    metadata = {name: parsed[name] for name in METADATA_FEATURES}
    return patches, metadata
