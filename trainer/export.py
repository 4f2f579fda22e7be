"""Export the `inspector` graph (generator + score + heatmap) as a new model version.

One ONNX graph, input ``patches`` [N, P, P, 1]: the camera's uint8/uint16 pixels,
scaled in the graph, when the profile's patches are the recipe's native crops (else
float32 in [0, 1]; version.json's io.input_datatype says which), outputs
``score`` [N] (the one the decision uses), ``phi`` [N] and ``heatmap`` [N, P, P, 1]
(names from vialguard.inspector_io), written with its calibration, the local score's
statistics (local_score.npz, also baked into the graph), report, recipe digest and
training data digest
into a new version directory of ``model_repository/inspector/`` through
vialguard.model_repository.publish_version (staging + rename: DESIGN
invariant 4; version numbers only grow).

Before anything is published, ONNX Runtime must give the Keras scores on a
probe batch within 1e-4 (DESIGN invariant 2): a conversion that changes the
numbers would silently move every threshold, so it is refused instead. The pixel
prefix is added after that check, and must then change no output by a single bit.
"""
from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
from collections.abc import Mapping
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from vialguard import inspector_io as io
from vialguard.calibration import Calibration
from vialguard.errors import ModelVersionError
from vialguard.local_score import MAP_SSIM, MAP_STRIP, LocalScoreModel
from vialguard.model_repository import publish_version
from vialguard.patching import is_native
from vialguard.recipe import Recipe

OPSET = 17
SCORE_TOLERANCE = 1e-4
HEATMAP_TOLERANCE = 1e-2   # min-max normalisation magnifies float noise where |X - X_hat| is flat
MANIFEST_FILENAME = io.MANIFEST_FILENAME
RESERVED = (io.ONNX_FILENAME, io.CALIBRATION_FILENAME, MANIFEST_FILENAME, io.LOCAL_SCORE_FILENAME,
            io.HEATMAP_ONNX_FILENAME)
PROBE_PATCHES = 8


class Profile(Protocol):
    """What export needs of trainer.config.ModelProfile."""

    name: str
    patch_size: int


def probe_patches(patch_size: int, n: int = PROBE_PATCHES, seed: int = 0) -> np.ndarray:
    """Deterministic probe patches: flat, gradient, smooth and rough noise, a bright spot."""
    rng = np.random.default_rng(seed)
    p = patch_size
    yy, xx = np.mgrid[0:p, 0:p] / max(p - 1, 1)
    kinds = [
        np.full((p, p), 0.5),
        0.2 + 0.6 * yy,
        rng.uniform(0, 1, (p, p)),
        0.5 + 0.2 * np.sin(6 * np.pi * xx) * np.cos(4 * np.pi * yy),
        np.clip(0.4 + 0.6 * np.exp(-((xx - 0.5) ** 2 + (yy - 0.4) ** 2) / 0.01), 0, 1),
    ]
    out = [kinds[i % len(kinds)] if i < len(kinds) else np.clip(kinds[i % len(kinds)] + rng.normal(0, 0.05, (p, p)), 0, 1)
           for i in range(n)]
    return np.stack(out)[..., None].astype(np.float32)


def convert_inspector(inspector: Any, patch_size: int) -> bytes:
    """The inspector tf.function as ONNX bytes (opset 17, dynamic batch)."""
    import tensorflow as tf
    import tf2onnx

    spec = tf.TensorSpec([None, patch_size, patch_size, 1], tf.float32, name=io.INPUT_PATCHES)
    model_proto, _ = tf2onnx.convert.from_function(inspector, input_signature=[spec], opset=OPSET)
    return model_proto.SerializeToString()


def _dims(value_info: Any) -> list[int | str]:
    """Static sizes as ints, dynamic ones as their symbolic name (or "?")."""
    return [d.dim_value if d.HasField("dim_value") else (d.dim_param or "?")
            for d in value_info.type.tensor_type.shape.dim]


def check_onnx_io(onnx_bytes: bytes, patch_size: int, input_datatype: str = io.DATATYPE_FP32) -> None:
    """The graph's names, dtypes and shapes are the ones vialguard.inspector_io promises."""
    import onnx

    elem = {"FP32": onnx.TensorProto.FLOAT, "UINT8": onnx.TensorProto.UINT8, "UINT16": onnx.TensorProto.UINT16}

    graph = onnx.load_from_string(onnx_bytes).graph
    inputs = {i.name: i for i in graph.input}
    outputs = {o.name: o for o in graph.output}
    p = patch_size
    expected = [(inputs, io.INPUT_PATCHES, [p, p, 1], 4), (outputs, io.OUTPUT_SCORE, [], 1),
                (outputs, io.OUTPUT_PHI, [], 1), (outputs, io.OUTPUT_HEATMAP, [p, p, 1], 4)]
    if sorted(inputs) != [io.INPUT_PATCHES] or sorted(outputs) != sorted(io.OUTPUTS):
        raise ModelVersionError(f"exported graph has inputs {sorted(inputs)} and outputs {sorted(outputs)}, expected "
                                f"[{io.INPUT_PATCHES}] and {sorted(io.OUTPUTS)}")
    for table, name, tail, rank in expected:
        info = table[name]
        dims = _dims(info)
        want = elem[input_datatype] if name == io.INPUT_PATCHES else onnx.TensorProto.FLOAT
        if info.type.tensor_type.elem_type != want:
            raise ModelVersionError(f"exported tensor '{name}' is not {onnx.TensorProto.DataType.Name(want)}")
        if len(dims) != rank or dims[1:] != tail or isinstance(dims[0], int):
            raise ModelVersionError(f"exported tensor '{name}' has shape {dims}, expected [N, *{tail}] "
                                    "with a dynamic batch N")


def compare_with_onnx(inspector: Any, onnx_bytes: bytes, patches: np.ndarray,
                      score_unit: float = 1.0) -> dict[str, float]:
    """Max |ONNX Runtime - TensorFlow| of every output on the same patches.

    ``score_max_ssim_units`` is the score's difference in units of the one SSIM: a
    local score is the SSIM map divided by a good-patch spread (``score_unit``, its
    largest value: LocalScoreModel.score_unit, is passed for it), so float32 rounding of the map that no decision
    can see grows by that division; multiplied back, the contract (1e-4) reads as for phi.
    """
    import onnxruntime as ort
    import tensorflow as tf

    session = ort.InferenceSession(onnx_bytes, providers=["CPUExecutionProvider"])
    served = dict(zip(io.OUTPUTS, session.run(list(io.OUTPUTS), {io.INPUT_PATCHES: patches})))
    ref = {name: value.numpy() for name, value in inspector(tf.constant(patches)).items()}
    diffs = {f"{name}_max_abs_diff": float(np.max(np.abs(served[name] - ref[name]))) for name in io.OUTPUTS}
    diffs[f"{io.OUTPUT_SCORE}_max_ssim_units"] = diffs[f"{io.OUTPUT_SCORE}_max_abs_diff"] * score_unit
    return diffs


def to_pixel_input(onnx_bytes: bytes, recipe: Recipe, patch_size: int, probes: np.ndarray) -> tuple[bytes, str]:
    """The float graph given the camera's pixels as input when the patches are native crops.

    Scaling is prepended to the verified float graph (trainer.onnx_pixel_input), the same
    prefix as for a rewritten older version; the two graphs must then answer the very same
    bits on pixel probes (the prefix is vialguard.patching's division), else nothing is
    published. A resampled profile keeps float32 patches: its pixels are not crops.
    """
    import onnxruntime as ort

    from trainer.onnx_pixel_input import prepend_pixel_scaling
    from vialguard.patching import to_unit_float

    if not is_native(recipe, patch_size):
        return onnx_bytes, io.DATATYPE_FP32
    pixel_bytes = prepend_pixel_scaling(onnx_bytes, recipe.bit_depth)
    dtype = np.uint8 if recipe.bit_depth == 8 else np.uint16
    pixels = np.rint(probes * io.PIXEL_SCALE[recipe.bit_depth]).astype(dtype)
    run = lambda model, x: ort.InferenceSession(model, providers=["CPUExecutionProvider"]).run(  # noqa: E731
        list(io.OUTPUTS), {io.INPUT_PATCHES: x})
    for name, want, got in zip(io.OUTPUTS, run(onnx_bytes, to_unit_float(pixels)), run(pixel_bytes, pixels)):
        if not np.array_equal(want, got):
            raise ModelVersionError(f"the pixel-input graph's '{name}' differs from the float graph's on scaled "
                                    f"probes (max {float(np.max(np.abs(want - got)))}); not published")
    return pixel_bytes, io.input_datatype(recipe.bit_depth)


def _check_consistent(calibration: Calibration, profile: Profile, recipe: Recipe, training_data_digest: str) -> None:
    """Thresholds belong to one model (invariant 3): refuse to ship them beside another."""
    problems = []
    if calibration.profile != profile.name:
        problems.append(f"calibration is for profile '{calibration.profile}', the model is '{profile.name}'")
    if calibration.patch_size != profile.patch_size:
        problems.append(f"calibration is for {calibration.patch_size} px patches, the model takes {profile.patch_size}")
    if calibration.recipe_digest != recipe.digest():
        problems.append(f"calibration was made with another recipe than '{recipe.id}' ({recipe.digest()})")
    if calibration.training_data_digest != training_data_digest:
        problems.append("calibration names another training data digest than the model's")
    if problems:
        raise ModelVersionError("refusing to publish: " + "; ".join(problems))


def _git_commit() -> str | None:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=Path(__file__).parent, capture_output=True,
                             text=True, timeout=10, check=True)
        return out.stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        return None


def _check_extra_names(names: list[str]) -> None:
    for name in names:
        if not name or "/" in name or "\\" in name or name.startswith(".") or name in RESERVED:
            raise ModelVersionError(f"cannot add file '{name}' to a version: it must be a plain file name "
                                    f"other than {list(RESERVED)}")


def _strip_settings(patch_size: int) -> dict[str, Any]:
    """The strip reference's settings the served graph bakes at this patch side (vialguard.strip_reference)."""
    from dataclasses import asdict

    from vialguard.strip_reference import StripReferenceParams

    settings = asdict(StripReferenceParams().at_side(patch_size))
    return {k: list(v) if isinstance(v, tuple) else v for k, v in settings.items()}


def export_version(
    generator: Any,
    profile: Profile,
    calibration: Calibration,
    report_files: Mapping[str, Path],
    repository: Path,
    recipe: Recipe,
    training_data_digest: str,
    extra_files: Mapping[str, bytes] | None = None,
    local: LocalScoreModel | None = None,
) -> int:
    """Convert, verify and publish a new version of `inspector`; returns its number.

    ``local`` is the local score's statistics when the calibration serves a local
    score; it must be the one the calibration was made with (its kind is checked).

    ``report_files`` maps a file name in the version (report.md, report.json,
    roc.png) to where it is now; ``extra_files`` maps a file name to its bytes
    (e.g. a Triton Python backend model.py, if one must live in every version).
    """
    from trainer.inspector import build_inspector, scored_map
    from trainer.onnx_heatmap_graph import heatmap_subgraph

    _check_consistent(calibration, profile, recipe, training_data_digest)
    _check_extra_names([*report_files, *(extra_files or {})])
    missing = [str(p) for p in report_files.values() if not Path(p).is_file()]
    if missing:
        raise ModelVersionError(f"report files not found: {missing}")
    want_kind = calibration.score
    if (local.kind if local is not None else "phi") != want_kind:
        raise ModelVersionError(f"refusing to publish: the calibration serves the '{want_kind}' score but the "
                                f"export was given {'no local score' if local is None else local.kind + ' statistics'}")
    inspector = build_inspector(generator, local)
    onnx_bytes = convert_inspector(inspector, profile.patch_size)
    check_onnx_io(onnx_bytes, profile.patch_size)
    probe_count = local.layout.per_acquisition if local is not None else PROBE_PATCHES
    diffs = compare_with_onnx(inspector, onnx_bytes, probe_patches(profile.patch_size, probe_count),
                              local.score_unit if local is not None else 1.0)
    tolerances = {f"{io.OUTPUT_SCORE}_max_ssim_units": SCORE_TOLERANCE, f"{io.OUTPUT_PHI}_max_abs_diff": SCORE_TOLERANCE,
                  f"{io.OUTPUT_HEATMAP}_max_abs_diff": HEATMAP_TOLERANCE}
    if not all(diffs[name] <= limit for name, limit in tolerances.items()):
        raise ModelVersionError(f"ONNX Runtime disagrees with TensorFlow on the probe patches ({diffs}); "
                                f"tolerances: {tolerances}. Not published.")
    onnx_bytes, input_type = to_pixel_input(onnx_bytes, recipe, profile.patch_size,
                                            probe_patches(profile.patch_size, probe_count, seed=1))
    check_onnx_io(onnx_bytes, profile.patch_size, input_type)
    manifest_map = scored_map(generator, local.anomaly_map if local is not None else MAP_SSIM)
    manifest = {
        "model": io.MODEL_NAME, "profile": profile.name, "patch_size": profile.patch_size,
        "recipe_id": recipe.id, "recipe_digest": recipe.digest(), "training_data_digest": training_data_digest,
        "onnx_sha256": hashlib.sha256(onnx_bytes).hexdigest(), "onnx_opset": OPSET,
        "io": {"input": io.INPUT_PATCHES, "input_datatype": input_type, "outputs": list(io.OUTPUTS)},
        "score": calibration.score,
        "anomaly_map": manifest_map,
        "patch_layout": local.layout.as_dict() if local is not None else None,
        # what the graph bakes, for the record (a version before 7 baked the defaults of its day)
        "strip_reference": _strip_settings(profile.patch_size) if manifest_map == MAP_STRIP else None,
        "local_score": ({"smooth_sigma": local.smooth_sigma, "smooth_after_fusion": local.smooth_after_fusion,
                         "fuse_frames": local.fuse_frames, "row_scale": local.row_scale is not None}
                        if local is not None else None),
        "probe_check": diffs, "serving_thresholds": calibration.serving,
        "created_utc": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "trainer_git_commit": _git_commit(),
    }

    def write(staging: Path) -> None:
        (staging / io.ONNX_FILENAME).write_bytes(onnx_bytes)
        (staging / io.HEATMAP_ONNX_FILENAME).write_bytes(heatmap_subgraph(onnx_bytes))
        calibration.save(staging / io.CALIBRATION_FILENAME)
        if local is not None:
            (staging / io.LOCAL_SCORE_FILENAME).write_bytes(local.to_bytes())
        for name, src in report_files.items():
            shutil.copyfile(src, staging / name)
        for name, data in (extra_files or {}).items():
            (staging / name).write_bytes(data)
        files = sorted(p.name for p in staging.iterdir())
        (staging / MANIFEST_FILENAME).write_text(json.dumps({**manifest, "files": files}, indent=2) + "\n")

    return publish_version(Path(repository), write)
