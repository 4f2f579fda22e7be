"""Fold the outline measurement (vialguard.outline) into a published inspector graph as a new version.

The served ``score`` of each patch of an outline region becomes

    max(local score, outline z x region's serving threshold / outline threshold)

so the version's serving thresholds keep their meaning: a patch is over its threshold when its local
score is, or when its vial's outline is over the outline threshold (the highest good vial of the
calibration kit). Other patches keep their score bit for bit. The outline reads the float patches the
graph already scales from the camera's pixels (trainer.onnx_pixel_input's ``patches__unit``).

The generator, phi, the heatmap and the calibration are the source version's: like
onnx_pixel_input.rewrite_version, this publishes a copy beside it (invariant 4: a published version
is never edited) whose version.json says where it came from; its report comes from
``trainer.cli validate`` on a held-out kit, through the new graph.
"""
from __future__ import annotations

import hashlib
import json
import shutil
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import onnx
from onnx import helper

from trainer.onnx_heatmap_graph import heatmap_subgraph
from trainer.onnx_pixel_input import SCALED_NAME
from vialguard.errors import ModelVersionError
from vialguard.inspector_io import MANIFEST_FILENAME, ONNX_FILENAME, OUTPUT_SCORE, HEATMAP_ONNX_FILENAME
from vialguard.local_score import PatchLayout
from vialguard.model_repository import copy_version, load_version_calibration, publish_version, version_dir
from vialguard.outline import OutlineModel
from vialguard.triton_backend import triton_backend_files

OUTLINE_FILENAME = "outline.npz"
NOT_MEASURED = -1e30      # the outline score of a patch of a region it does not measure: never the max
PREFIX = "outline"       # the folded nodes' names: outline/..., outline1/... when folded again


def outline_patch_scores_onnx(model: OutlineModel, layout: PatchLayout, patch_size: int,
                              scales: Mapping[int, float], opset: int) -> onnx.ModelProto:
    """patches [N, P, P, 1] in [0, 1] -> [N]: each vial's outline z x its region's scale (patch order)."""
    import tensorflow as tf
    import tf2onnx

    from trainer.outline_tf import outline_scores_tf

    def per_patch(x: tf.Tensor) -> tf.Tensor:
        z = outline_scores_tf(x, model, layout)                                   # [A, V, R']
        a = tf.shape(z)[0]
        filler = tf.fill([a, layout.frames, layout.vials], tf.constant(NOT_MEASURED, tf.float32))
        columns = [tf.broadcast_to(z[:, None, :, model.regions.index(r)] * np.float32(scales[r]),
                                   [a, layout.frames, layout.vials]) if r in model.regions else filler
                   for r in range(layout.regions)]
        return tf.reshape(tf.stack(columns, axis=-1), [-1])                       # patch order

    spec = tf.TensorSpec([None, patch_size, patch_size, 1], tf.float32, name="patches")
    proto, _ = tf2onnx.convert.from_function(tf.function(per_patch), input_signature=[spec], opset=opset)
    return proto


def fold_outline(model_bytes: bytes, outline: onnx.ModelProto) -> bytes:
    """The inspector graph with ``score`` = max(its score, ``outline``'s score), the outline reading its float patches."""
    model = onnx.load_from_string(model_bytes)
    graph = model.graph
    if not any(SCALED_NAME in node.output for node in graph.node):
        raise ModelVersionError(f"the graph has no '{SCALED_NAME}' tensor (a pixel-input graph is needed)")
    producer = [node for node in graph.node if OUTPUT_SCORE in node.output]
    if len(producer) != 1:
        raise ModelVersionError(f"expected one node producing '{OUTPUT_SCORE}', found {len(producer)}")
    taken = {name for node in graph.node for name in [*node.input, *node.output, node.name]} | \
        {t.name for t in graph.initializer}
    prefix = next(f"{PREFIX}{k or ''}/" for k in range(100) if not any(n.startswith(f"{PREFIX}{k or ''}/") for n in taken))
    local = f"{OUTPUT_SCORE}__before_{prefix.rstrip('/')}"
    producer[0].output[:] = [local if name == OUTPUT_SCORE else name for name in producer[0].output]
    for node in graph.node:  # nodes reading the score inside the graph read the local one
        node.input[:] = [local if name == OUTPUT_SCORE else name for name in node.input]
    sub = outline.graph
    source = sub.input[0].name
    renamed = {source: SCALED_NAME}

    def name_of(name: str) -> str:
        return renamed.get(name, prefix + name if name else name)

    for tensor in sub.initializer:
        tensor.name = prefix + tensor.name
        graph.initializer.append(tensor)
    for node in sub.node:
        node.input[:] = [name_of(n) for n in node.input]
        node.output[:] = [name_of(n) for n in node.output]
        node.name = prefix + node.name
        graph.node.append(node)
    graph.node.append(helper.make_node("Max", [local, name_of(sub.output[0].name)], [OUTPUT_SCORE],
                                       name=f"{prefix}score_with_outline"))
    onnx.checker.check_model(model)
    return model.SerializeToString()


def outline_version(repository: Path, version: int, outline: OutlineModel, layout: PatchLayout, opset: int,
                    report_files: Mapping[str, Path] | None = None) -> int:
    """Publish ``version`` with the outline folded into its score; returns the new version's number."""
    source = version_dir(repository, version)
    calibration = load_version_calibration(repository, version)
    served = calibration.serving_thresholds.as_array()
    scales = {r: float(served[r]) / outline.threshold for r in outline.regions}
    graph = outline_patch_scores_onnx(outline, layout, calibration.patch_size, scales, opset)
    onnx_bytes = fold_outline((source / ONNX_FILENAME).read_bytes(), graph)
    skip = {ONNX_FILENAME, HEATMAP_ONNX_FILENAME, MANIFEST_FILENAME, OUTLINE_FILENAME, *triton_backend_files(),
            *(report_files or {})}

    def write(staging: Path) -> None:
        for path in source.iterdir():
            if path.is_file() and path.name not in skip:
                shutil.copy2(path, staging / path.name)
        for name, data in triton_backend_files().items():
            (staging / name).write_bytes(data)
        for name, path in (report_files or {}).items():
            shutil.copyfile(path, staging / name)
        (staging / ONNX_FILENAME).write_bytes(onnx_bytes)
        (staging / HEATMAP_ONNX_FILENAME).write_bytes(heatmap_subgraph(onnx_bytes))
        (staging / OUTLINE_FILENAME).write_bytes(outline.to_bytes())
        manifest = json.loads((source / MANIFEST_FILENAME).read_text())
        manifest["onnx_sha256"] = hashlib.sha256(onnx_bytes).hexdigest()
        manifest["outline"] = {"regions": list(outline.regions), "threshold_z": outline.threshold,
                               "score_scale": {f"R{r}": s for r, s in scales.items()}}
        manifest["derived_from"] = {"version": version, "change": "outline measurement folded into the score of "
                                    + ", ".join(f"R{r}" for r in outline.regions)}
        manifest["files"] = sorted({*manifest.get("files", []), OUTLINE_FILENAME})
        (staging / MANIFEST_FILENAME).write_text(json.dumps(manifest, indent=2) + "\n")

    return publish_version(repository, write)


def validated_outline_version(repository: Path, version: int, outline: OutlineModel, layout: PatchLayout, opset: int,
                              kit: Path, report_dir: Path) -> int:
    """Fold the outline into a scratch copy first, validate that graph on the held-out ``kit`` (its report in
    ``report_dir``), then publish it with that report into ``repository``; returns the new version."""
    import tempfile

    from trainer.validate import validate_version

    with tempfile.TemporaryDirectory(prefix="vialguard-outline-") as scratch:
        trial_repository = copy_version(repository, version, Path(scratch) / "model_repository")
        trial = outline_version(trial_repository, version, outline, layout, opset)
        _, files = validate_version(trial_repository, trial, kit, report_dir)
        return outline_version(repository, version, outline, layout, opset, files)
