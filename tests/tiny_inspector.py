"""A tiny, deterministic stand-in for the exported `inspector` graph, for Triton tests.

Same tensor names, dtypes and shapes as the real export (vialguard.inspector_io):
"reconstruction" X_hat = gain * 3x3 mean of X, score = gain * mean|X - X_hat|, phi = mean|X - X_hat|,
heatmap = per-patch min-max normalised |X - X_hat|. Different ``gain`` values give
versions that answer differently, which the hot-update test needs to tell them
apart. Built with onnx.helper (milliseconds, no TensorFlow).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper

from vialguard.calibration import Calibration
from vialguard.decision import RegionThresholds
from vialguard.inspector_io import (CALIBRATION_FILENAME, INPUT_PATCHES, ONNX_FILENAME, OUTPUT_HEATMAP, OUTPUT_PHI,
                                    OUTPUT_SCORE)
from vialguard.model_repository import publish_version
from vialguard.triton_backend import triton_backend_files

OPSET = 17


def tiny_inspector_onnx(patch_size: int, gain: float = 1.0) -> bytes:
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
    return model.SerializeToString()


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


def publish_tiny_version(repository: Path, patch_size: int, gain: float, threshold: float) -> int:
    """Publish one complete tiny version (ONNX, calibration, Triton adapter) and return its number."""

    def write(staging: Path) -> None:
        (staging / ONNX_FILENAME).write_bytes(tiny_inspector_onnx(patch_size, gain))
        tiny_calibration(patch_size, threshold).save(staging / CALIBRATION_FILENAME)
        for name, data in triton_backend_files().items():
            (staging / name).write_bytes(data)

    return publish_version(repository, write)


def random_patches(n: int, patch_size: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).random((n, patch_size, patch_size, 1), dtype=np.float32)
