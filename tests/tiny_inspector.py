"""A tiny, deterministic stand-in for the exported `inspector` graph, for Triton tests.

Same tensor names, dtypes and shapes as the real export (vialguard.inspector_io):
"reconstruction" X_hat = gain * 3x3 mean of X, score = gain * mean|X - X_hat|, phi = mean|X - X_hat|,
heatmap = per-patch min-max normalised |X - X_hat|. Different ``gain`` values give
versions that answer differently, which the hot-update test needs to tell them
apart. Built with onnx.helper (milliseconds, no TensorFlow). With ``bit_depth`` the
graph takes uint8/uint16 pixels through the same scaling prefix a rewritten real
version has (trainer.onnx_pixel_input).
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper

from vialguard.calibration import Calibration
from vialguard.decision import RegionThresholds
from trainer.onnx_heatmap_graph import heatmap_subgraph
from trainer.onnx_pixel_input import prepend_pixel_scaling
from vialguard.inspector_io import (CALIBRATION_FILENAME, HEATMAP_ONNX_FILENAME, INPUT_PATCHES, MANIFEST_FILENAME, ONNX_FILENAME,
                                    OUTPUT_HEATMAP, OUTPUT_PHI, OUTPUT_SCORE, input_datatype)
from vialguard.model_repository import publish_version
from vialguard.triton_backend import triton_backend_files

OPSET = 17


def tiny_inspector_onnx(patch_size: int, gain: float = 1.0, bit_depth: int | None = None) -> bytes:
    """Serialized ONNX model: patches [N, P, P, 1] -> score [N], heatmap [N, P, P, 1]."""
    p = patch_size
    const = lambda name, value: helper.make_node(  # noqa: E731
        "Constant", [], [name], value=helper.make_tensor(name, TensorProto.FLOAT, [], [value])
    )
    nodes = [
        const("gain", gain),
        const("eps", 1e-12),
        helper.make_node("Transpose", [INPUT_PATCHES], ["nchw"], perm=[0, 3, 1, 2]),
        helper.make_node("AveragePool", ["nchw"], ["pooled"], kernel_shape=[3, 3], pads=[1, 1, 1, 1],
                         count_include_pad=0),
        helper.make_node("Transpose", ["pooled"], ["smooth"], perm=[0, 2, 3, 1]),
        helper.make_node("Mul", ["smooth", "gain"], ["x_hat"]),
        helper.make_node("Sub", [INPUT_PATCHES, "x_hat"], ["diff"]),
        helper.make_node("Abs", ["diff"], ["absdiff"]),
        helper.make_node("ReduceMean", ["absdiff"], ["mean"], axes=[1, 2, 3], keepdims=0),
        helper.make_node("Mul", ["mean", "gain"], [OUTPUT_SCORE]),
        helper.make_node("Identity", ["mean"], [OUTPUT_PHI]),
        helper.make_node("ReduceMin", ["absdiff"], ["lo"], axes=[1, 2, 3], keepdims=1),
        helper.make_node("ReduceMax", ["absdiff"], ["hi"], axes=[1, 2, 3], keepdims=1),
        helper.make_node("Sub", ["absdiff", "lo"], ["shifted"]),
        helper.make_node("Sub", ["hi", "lo"], ["span"]),
        helper.make_node("Max", ["span", "eps"], ["safe_span"]),
        helper.make_node("Div", ["shifted", "safe_span"], [OUTPUT_HEATMAP]),
    ]
    graph = helper.make_graph(
        nodes,
        "tiny_inspector",
        [helper.make_tensor_value_info(INPUT_PATCHES, TensorProto.FLOAT, ["N", p, p, 1])],
        [
            helper.make_tensor_value_info(OUTPUT_SCORE, TensorProto.FLOAT, ["N"]),
            helper.make_tensor_value_info(OUTPUT_PHI, TensorProto.FLOAT, ["N"]),
            helper.make_tensor_value_info(OUTPUT_HEATMAP, TensorProto.FLOAT, ["N", p, p, 1]),
        ],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)], ir_version=8)
    onnx.checker.check_model(model)
    serialized = model.SerializeToString()
    return serialized if bit_depth is None else prepend_pixel_scaling(serialized, bit_depth)


def tiny_calibration(patch_size: int, threshold: float) -> Calibration:
    """A calibration whose thresholds identify the version that wrote it."""
    region = RegionThresholds.from_mapping({f"R{i}": threshold for i in range(4)})
    return Calibration(
        profile="tiny-test",
        patch_size=patch_size,
        recipe_id="bfs5-10ml",
        recipe_digest="0" * 64,
        training_data_digest="0" * 64,
        thresholds={"patch": region, "strip": region, "run": region},
    )


def publish_tiny_version(repository: Path, patch_size: int, gain: float, threshold: float,
                         bit_depth: int | None = None, heatmap_graph: bool = True) -> int:
    """Publish one complete tiny version (ONNX, calibration, Triton adapter) and return its number.

    ``heatmap_graph=False`` leaves heatmap.onnx out, as in versions exported before it existed.
    """

    def write(staging: Path) -> None:
        model = tiny_inspector_onnx(patch_size, gain, bit_depth)
        (staging / ONNX_FILENAME).write_bytes(model)
        if heatmap_graph:
            (staging / HEATMAP_ONNX_FILENAME).write_bytes(heatmap_subgraph(model))
        if bit_depth is not None:  # as the exporter records it; without it the rollout serves FP32
            manifest = {"io": {"input": INPUT_PATCHES, "input_datatype": input_datatype(bit_depth)}}
            (staging / MANIFEST_FILENAME).write_text(json.dumps(manifest))
        tiny_calibration(patch_size, threshold).save(staging / CALIBRATION_FILENAME)
        for name, data in triton_backend_files().items():
            (staging / name).write_bytes(data)

    return publish_version(repository, write)


def random_patches(n: int, patch_size: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).random((n, patch_size, patch_size, 1), dtype=np.float32)


def random_pixels(n: int, patch_size: int, seed: int = 0, dtype: type = np.uint8) -> np.ndarray:
    """Camera pixels [N, P, P, 1], the whole range of ``dtype``."""
    top = int(np.iinfo(dtype).max)
    return np.random.default_rng(seed).integers(0, top, (n, patch_size, patch_size, 1), dtype=dtype, endpoint=True)
