"""Give a float-input `inspector` ONNX an 8/16-bit pixel input, scaled inside the graph.

Versions exported before integer inputs existed (version 3 and older) take float32
patches in [0, 1]. Prepending a scaling prefix to such a graph makes it take the
camera's own pixels while every node after the prefix sees exactly the floats it saw
before: the prefix looks each pixel value up in a table of ``value / PIXEL_SCALE``
made by the same IEEE division as vialguard.patching.to_unit_float, so scores do not
move by a single bit (tested through ONNX Runtime). A lookup rather than
``Cast -> Div``: ONNX Runtime's cast of uint8 to float and its division cost twice
the table's cast to int32 and gather (measured 20 ms against 9 ms for an
acquisition's 60 patches at 256 px on 2 threads). The tiny test model uses it too, so Triton is tested with the
very graph prefix a rewritten version would serve.

This does not edit a published version in place (its model.onnx digest is part of
its record): ``rewrite_version`` publishes the result as a new version beside it.
"""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from trainer.onnx_heatmap_graph import heatmap_subgraph
from vialguard.inspector_io import (HEATMAP_ONNX_FILENAME, INPUT_PATCHES, MANIFEST_FILENAME, ONNX_FILENAME, PIXEL_SCALE,
                                    input_datatype)
from vialguard.model_repository import copy_version, publish_version, version_dir
from vialguard.triton_backend import triton_backend_files

ELEM_TYPE = {8: TensorProto.UINT8, 16: TensorProto.UINT16}
SCALED_NAME = f"{INPUT_PATCHES}__unit"  # the float patches the original graph reads


def prepend_pixel_scaling(model_bytes: bytes, bit_depth: int) -> bytes:
    """``model_bytes`` with its float32 ``patches`` input replaced by ``bit_depth``-bit pixels scaled in-graph."""
    if bit_depth not in ELEM_TYPE:
        raise ValueError(f"bit depth must be 8 or 16, got {bit_depth}")
    model = onnx.load_from_string(model_bytes)
    graph = model.graph
    inputs = [i for i in graph.input if i.name == INPUT_PATCHES]
    if len(inputs) != 1 or inputs[0].type.tensor_type.elem_type != TensorProto.FLOAT:
        raise ValueError(f"the graph has no float32 input '{INPUT_PATCHES}' to rewrite")
    if any(o.name == INPUT_PATCHES for o in graph.output):
        raise ValueError(f"the graph outputs its input '{INPUT_PATCHES}' directly; refusing to rewrite it")
    for node in graph.node:
        if any(a.type in (onnx.AttributeProto.GRAPH, onnx.AttributeProto.GRAPHS) for a in node.attribute):
            raise ValueError(f"node {node.name or node.op_type} has a subgraph; rewriting those is not supported")
        node.input[:] = [SCALED_NAME if name == INPUT_PATCHES else name for name in node.input]
    levels = np.arange(2 ** bit_depth, dtype=np.float32)
    table = numpy_helper.from_array(levels / np.float32(PIXEL_SCALE[bit_depth]), f"{INPUT_PATCHES}__unit_table")
    prefix = [
        helper.make_node("Cast", [INPUT_PATCHES], [f"{INPUT_PATCHES}__index"], to=TensorProto.INT32,
                         name="pixel_to_index"),
        helper.make_node("Constant", [], [table.name], value=table, name="pixel_unit_table"),
        helper.make_node("Gather", [table.name, f"{INPUT_PATCHES}__index"], [SCALED_NAME], axis=0,
                         name="pixel_to_unit"),
    ]
    for k, node in enumerate(prefix):
        graph.node.insert(k, node)
    inputs[0].type.tensor_type.elem_type = ELEM_TYPE[bit_depth]
    onnx.checker.check_model(model)
    return model.SerializeToString()


def rewrite_version(repository: Path, version: int, bit_depth: int) -> int:
    """Publish a copy of ``version`` whose graph takes ``bit_depth``-bit pixels; returns the new number.

    Same calibration, statistics and report (the scores are the same bits); the current
    Triton adapter (the old one refuses integer patches) and the heatmap-only graph;
    version.json records the new digest, the input datatype and where it came from.
    """
    import hashlib

    source = version_dir(repository, version)
    onnx_bytes = prepend_pixel_scaling((source / ONNX_FILENAME).read_bytes(), bit_depth)

    def write(staging: Path) -> None:
        for path in source.iterdir():
            if path.is_file() and path.name not in (ONNX_FILENAME, HEATMAP_ONNX_FILENAME, MANIFEST_FILENAME,
                                                    *triton_backend_files()):
                shutil.copy2(path, staging / path.name)
        for name, data in triton_backend_files().items():
            (staging / name).write_bytes(data)
        (staging / ONNX_FILENAME).write_bytes(onnx_bytes)
        (staging / HEATMAP_ONNX_FILENAME).write_bytes(heatmap_subgraph(onnx_bytes))
        manifest_path = source / MANIFEST_FILENAME
        manifest = json.loads(manifest_path.read_text()) if manifest_path.is_file() else {}
        manifest.setdefault("io", {})["input_datatype"] = input_datatype(bit_depth)
        manifest["onnx_sha256"] = hashlib.sha256(onnx_bytes).hexdigest()
        manifest["derived_from"] = {"version": version, "change": f"{bit_depth}-bit pixel input scaled in-graph"}
        (staging / MANIFEST_FILENAME).write_text(json.dumps(manifest, indent=2) + "\n")

    return publish_version(repository, write)


def pixel_copy_repository(repository: Path, version: int, scratch: Path, bit_depth: int = 8) -> tuple[Path, int]:
    """A scratch model repository with ``version`` and its pixel-input rewrite: (repository, the new version).

    For measuring and testing the pixel path on a version exported before it existed,
    without touching the real repository.
    """
    target = copy_version(repository, version, Path(scratch) / "model_repository")
    return target, rewrite_version(target, version, bit_depth)
