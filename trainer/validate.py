"""Validate a published version on any kit, exactly as the line serves it.

``python -m trainer.cli validate --version N --kit DIR`` reads a kit in the dataset
format (the simulator's, or one made by ``trainer.cli import`` from a line's own
Knapp kit), cuts every acquisition with the one patching function, scores it with
the version's own ``model.onnx`` under ONNX Runtime (the CPU serving path, one
acquisition per call as Triton gets it) and judges it with the version's own
``calibration.json``: Tables 1-3, the severity table, false rejects by region and
the ROC, written as report.md/json and roc.png. No training artefact is needed.
"""
from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from trainer.evaluate import Evaluation, evaluate
from trainer.metrics import roc_curve
from trainer.qualification import kit_defects
from trainer.report import write_report
from trainer.scoring import ScoredSet
from vialguard import inspector_io as io
from vialguard.calibration import Calibration
from vialguard.dataset import iter_acquisitions, load_frames, patch_labels, read_header
from vialguard.errors import ModelVersionError
from vialguard.model_repository import load_version_calibration, version_dir
from vialguard.patching import acquisition_labels, cut_acquisition, cut_acquisition_pixels, select_inspected
from vialguard.recipe import load_recipe

log = logging.getLogger(__name__)


def score_kit_with_onnx(onnx_path: Path, kit: Path, patch_size: int, threads: int = 2) -> tuple[ScoredSet, np.ndarray]:
    """(scored set with the served score, phi per patch) of every acquisition of a dataset folder."""
    import time

    import onnxruntime as ort

    header = read_header(kit)
    recipe = load_recipe(header.recipe_id)
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    session = ort.InferenceSession(str(onnx_path), options, providers=["CPUExecutionProvider"])
    # what the preprocessor sends this graph: the camera's pixels when it scales them
    # itself (uint8/uint16 input), else float32 patches in [0, 1]
    takes_pixels = session.get_inputs()[0].type != "tensor(float)"
    labels = acquisition_labels(recipe)
    columns: dict[str, list] = {k: [] for k in ("scores", "phi", "region", "vial", "frame", "acquisition_id",
                                                "product_id", "run_index", "patch_defective",
                                                "acquisition_defective")}
    seconds = []
    for record in iter_acquisitions(kit):
        frames = load_frames(kit, record)
        inspected = select_inspected(frames, recipe)
        patches = (cut_acquisition_pixels(inspected, recipe) if takes_pixels
                   else cut_acquisition(inspected, recipe, patch_size))
        start = time.perf_counter()
        score, phi = session.run([io.OUTPUT_SCORE, io.OUTPUT_PHI], {io.INPUT_PATCHES: patches})
        seconds.append(time.perf_counter() - start)
        n = len(labels)
        columns["scores"].append(score)
        columns["phi"].append(phi)
        columns["region"].append([lab.region for lab in labels])
        columns["vial"].append([lab.vial for lab in labels])
        columns["frame"].append([lab.frame for lab in labels])
        columns["acquisition_id"].append([record.acquisition_id] * n)
        columns["product_id"].append([record.product_id] * n)
        columns["run_index"].append([record.run_index] * n)
        columns["patch_defective"].append(patch_labels(kit, record, recipe, patch_size))
        columns["acquisition_defective"].append([record.label == "defective"] * n)
    if not seconds:
        raise ModelVersionError(f"kit {kit} holds no acquisition")
    flat = {k: np.concatenate([np.asarray(v) for v in vals]) for k, vals in columns.items()}
    phi = flat.pop("phi")
    scored = ScoredSet.from_columns(flat.pop("scores"), **flat, batch_seconds=seconds,
                                    batch_sizes=[len(labels)] * len(seconds), runtime="onnxruntime-cpu")
    return scored, phi


def validate_version(repository: Path, version: int, kit: Path, out: Path) -> tuple[Evaluation, dict[str, Path]]:
    """Score ``kit`` with version ``version`` as served and write its report under ``out``."""
    directory = version_dir(repository, version)
    onnx_path = directory / io.ONNX_FILENAME
    if not onnx_path.is_file():
        raise ModelVersionError(f"version {version} in {directory} has no {io.ONNX_FILENAME}")
    calibration: Calibration = load_version_calibration(repository, version)
    header = read_header(kit)
    if header.recipe_digest != calibration.recipe_digest:
        raise ModelVersionError(f"kit {kit} was acquired with recipe '{header.recipe_id}' ({header.recipe_digest[:12]}), "
                                f"version {version} was calibrated for '{calibration.recipe_id}' "
                                f"({calibration.recipe_digest[:12]}): its thresholds do not apply")
    scored, phi = score_kit_with_onnx(onnx_path, kit, calibration.patch_size)
    evaluation = evaluate(scored, calibration, kit_defects(kit))
    strip_phi = _strip_max(scored, phi)
    evaluation.qualification["phi_strip_auroc"] = roc_curve(strip_phi[0], strip_phi[1]).auroc
    files = write_report(evaluation, out, title=f"vialguard version {version} validated on {Path(kit).name}")
    log.info("version %d on %s: run accuracy %.4f, strip accuracy %.4f; report in %s", version, kit,
             evaluation.per_run.accuracy, evaluation.per_strip.accuracy, out)
    return evaluation, files


def _strip_max(scored: ScoredSet, values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    _, acq = scored.acquisitions()
    best = np.full(int(acq.max()) + 1, -np.inf)
    np.maximum.at(best, acq, values)
    defective = np.zeros(best.size, dtype=bool)
    defective[acq] = scored.acquisition_defective
    return best, defective
