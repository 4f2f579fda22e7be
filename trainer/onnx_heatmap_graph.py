"""The heatmap-only part of an `inspector` graph, for fetching the heatmaps of a few patches.

A good acquisition moves no heatmap: the preprocessor asks Triton for score and phi,
and for the heatmaps of a rejected acquisition's over-threshold patches only once the
verdict names them. The full graph cannot answer for a few patches: a local score
fuses the frames of one acquisition, so it takes whole acquisitions (60 patches), and
ONNX Runtime runs every node of a graph whatever outputs are asked for. This is the
subgraph from ``patches`` to ``heatmap`` (generator + |X - X_hat| + min-max, no SSIM,
no local score): any number of patches, the same nodes, so the same bits (tested),
and a few patches cost a few sixtieths of an acquisition.
"""
from __future__ import annotations

import onnx
import onnx.utils

from vialguard.inspector_io import INPUT_PATCHES, OUTPUT_HEATMAP


def heatmap_subgraph(model_bytes: bytes) -> bytes:
    """``model_bytes`` cut down to the nodes between its ``patches`` input and its ``heatmap`` output."""
    model = onnx.load_from_string(model_bytes)
    sub = onnx.utils.Extractor(model).extract_model([INPUT_PATCHES], [OUTPUT_HEATMAP])
    onnx.checker.check_model(sub)
    return sub.SerializeToString()
