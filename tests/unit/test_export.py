"""Export of the inspector graph as a new, whole model version."""
from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np
import onnx
import onnxruntime as ort
import pytest

from tests.unit.synthetic_scores import synthetic_kit
from trainer import export
from trainer.calibrate import calibrate
from trainer.config import get_profile
from trainer.evaluate import evaluate
from trainer.inspector import build_inspector, score_patches
from trainer.networks.generator import build_generator
from trainer.report import write_report
from vialguard import inspector_io as io
from vialguard.calibration import Calibration
from vialguard.errors import ModelVersionError
from vialguard.model_repository import STAGING_DIR, list_versions, load_version_calibration
from vialguard.recipe import load_recipe

RECIPE = load_recipe()
DIGEST = "sha256:training-data-under-test"
PROFILE = get_profile("tiny")


@pytest.fixture(scope="module")
def generator():  # noqa: ANN201
    import keras

    keras.utils.set_random_seed(0)
    return build_generator(PROFILE)


@pytest.fixture(scope="module")
def calibration() -> Calibration:
    return calibrate(synthetic_kit(n_good=4, n_defective=4, runs=10, seed=1), profile=PROFILE.name,
                     patch_size=PROFILE.patch_size, recipe=RECIPE, training_data_digest=DIGEST)


@pytest.fixture(scope="module")
def report_files(calibration: Calibration, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return write_report(evaluate(synthetic_kit(n_good=4, n_defective=4, runs=10, seed=2), calibration),
                        tmp_path_factory.mktemp("report"))


@pytest.fixture(scope="module")
def published(generator, calibration: Calibration, report_files: dict[str, Path],  # noqa: ANN001
              tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, int]:
    """One real conversion + publication shared by the read-only tests."""
    repo = tmp_path_factory.mktemp("repo")
    version = export.export_version(generator, PROFILE, calibration, report_files, repo, RECIPE, DIGEST,
                                    extra_files={"model.py": b"# triton python backend hook\n"})
    return repo, version


@pytest.fixture()
def fast_convert(published: tuple[Path, int], monkeypatch: pytest.MonkeyPatch) -> None:
    """Reuse the ONNX already converted: these tests are about publishing, not tf2onnx."""
    repo, version = published
    onnx_bytes = (repo / io.MODEL_NAME / str(version) / io.ONNX_FILENAME).read_bytes()
    monkeypatch.setattr(export, "convert_inspector", lambda inspector, patch_size: onnx_bytes)


def test_onnx_runtime_scores_equal_keras_scores_within_1e_4(published: tuple[Path, int], generator) -> None:  # noqa: ANN001
    repo, version = published
    rng = np.random.default_rng(5)
    patches = np.concatenate([export.probe_patches(PROFILE.patch_size, 4, seed=3),
                              rng.uniform(0, 1, (70, PROFILE.patch_size, PROFILE.patch_size, 1))]).astype(np.float32)
    keras_scores, keras_heat = score_patches(build_inspector(generator), patches, batch=60)
    session = ort.InferenceSession(str(repo / io.MODEL_NAME / str(version) / io.ONNX_FILENAME),
                                   providers=["CPUExecutionProvider"])
    onnx_scores, onnx_heat = session.run([io.OUTPUT_SCORE, io.OUTPUT_HEATMAP], {io.INPUT_PATCHES: patches})
    assert onnx_scores.shape == (74,) and onnx_heat.shape == patches.shape
    assert np.max(np.abs(onnx_scores - keras_scores)) <= 1e-4
    assert np.ptp(keras_scores) > 0  # the probe really exercises the model


def test_exported_graph_names_and_shapes_match_inspector_io(published: tuple[Path, int]) -> None:
    repo, version = published
    graph = onnx.load(str(repo / io.MODEL_NAME / str(version) / io.ONNX_FILENAME)).graph
    assert [i.name for i in graph.input] == [io.INPUT_PATCHES]
    assert sorted(o.name for o in graph.output) == sorted(io.OUTPUTS)
    dims = [d.dim_value for d in graph.input[0].type.tensor_type.shape.dim]
    assert dims[1:] == [PROFILE.patch_size, PROFILE.patch_size, 1]


def test_version_directory_holds_model_calibration_report_and_provenance(
        published: tuple[Path, int], calibration: Calibration) -> None:
    repo, version = published
    vdir = repo / io.MODEL_NAME / str(version)
    names = {p.name for p in vdir.iterdir()}
    assert {io.ONNX_FILENAME, io.CALIBRATION_FILENAME, io.REPORT_MD_FILENAME, io.REPORT_JSON_FILENAME,
            io.ROC_PNG_FILENAME, export.MANIFEST_FILENAME, "model.py"} <= names
    assert load_version_calibration(repo, version).thresholds == calibration.thresholds
    manifest = json.loads((vdir / export.MANIFEST_FILENAME).read_text())
    assert manifest["onnx_sha256"] == hashlib.sha256((vdir / io.ONNX_FILENAME).read_bytes()).hexdigest()
    assert manifest["recipe_digest"] == RECIPE.digest() and manifest["training_data_digest"] == DIGEST
    assert manifest["profile"] == PROFILE.name and manifest["patch_size"] == PROFILE.patch_size
    assert manifest["probe_check"]["score_max_ssim_units"] <= export.SCORE_TOLERANCE
    assert manifest["probe_check"]["phi_max_abs_diff"] <= export.SCORE_TOLERANCE
    assert manifest["io"]["input_datatype"] == "FP32"  # the tiny profile resamples: its patches are not crops
    heat = ort.InferenceSession(str(vdir / io.HEATMAP_ONNX_FILENAME), providers=["CPUExecutionProvider"])
    full = ort.InferenceSession(str(vdir / io.ONNX_FILENAME), providers=["CPUExecutionProvider"])
    probes = export.probe_patches(PROFILE.patch_size, 4)
    np.testing.assert_array_equal(heat.run([io.OUTPUT_HEATMAP], {io.INPUT_PATCHES: probes[:3]})[0],
                                  full.run([io.OUTPUT_HEATMAP], {io.INPUT_PATCHES: probes})[0][:3])


@pytest.mark.usefixtures("fast_convert")
def test_version_numbers_only_grow_even_after_the_latest_is_deleted(
        generator, calibration: Calibration, report_files: dict[str, Path], tmp_path: Path) -> None:  # noqa: ANN001
    first = export.export_version(generator, PROFILE, calibration, report_files, tmp_path, RECIPE, DIGEST)
    second = export.export_version(generator, PROFILE, calibration, report_files, tmp_path, RECIPE, DIGEST)
    assert second > first
    shutil.rmtree(tmp_path / io.MODEL_NAME / str(second))
    third = export.export_version(generator, PROFILE, calibration, report_files, tmp_path, RECIPE, DIGEST)
    assert third > second
    assert list_versions(tmp_path) == [first, third]


def _nothing_published(repo: Path) -> bool:
    staging = repo / STAGING_DIR
    return list_versions(repo) == [] and (not staging.exists() or not any(staging.iterdir()))


@pytest.mark.usefixtures("fast_convert")
def test_a_failing_write_leaves_no_version_directory(
        generator, calibration: Calibration, report_files: dict[str, Path], tmp_path: Path,  # noqa: ANN001
        monkeypatch: pytest.MonkeyPatch) -> None:
    def disk_full(src: Path, dst: Path) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(export.shutil, "copyfile", disk_full)
    with pytest.raises(OSError, match="No space"):
        export.export_version(generator, PROFILE, calibration, report_files, tmp_path, RECIPE, DIGEST)
    assert _nothing_published(tmp_path)


@pytest.mark.usefixtures("fast_convert")
def test_onnx_that_disagrees_with_keras_is_not_published(
        generator, calibration: Calibration, report_files: dict[str, Path], tmp_path: Path,  # noqa: ANN001
        monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("score_max_ssim_units", "phi_max_abs_diff", "heatmap_max_abs_diff"):
        diffs = {"score_max_ssim_units": 0.0, "score_max_abs_diff": 0.0, "phi_max_abs_diff": 0.0,
                 "heatmap_max_abs_diff": 0.0, name: 3e-2}
        monkeypatch.setattr(export, "compare_with_onnx", lambda *a, d=diffs: d)
        with pytest.raises(ModelVersionError, match="disagrees"):
            export.export_version(generator, PROFILE, calibration, report_files, tmp_path, RECIPE, DIGEST)
        assert _nothing_published(tmp_path)


def test_calibration_of_another_model_is_refused(
        generator, calibration: Calibration, report_files: dict[str, Path], tmp_path: Path) -> None:  # noqa: ANN001
    with pytest.raises(ModelVersionError, match="training data digest"):
        export.export_version(generator, PROFILE, calibration, report_files, tmp_path, RECIPE, "sha256:other")
    with pytest.raises(ModelVersionError, match="profile 'tiny'.*'cpu'"):
        export.export_version(generator, get_profile("cpu"), calibration, report_files, tmp_path, RECIPE, DIGEST)
    assert _nothing_published(tmp_path)


def test_extra_files_cannot_overwrite_the_model_or_escape_the_version(
        generator, calibration: Calibration, report_files: dict[str, Path], tmp_path: Path) -> None:  # noqa: ANN001
    for bad in (io.ONNX_FILENAME, "../model.py", ".hidden"):
        with pytest.raises(ModelVersionError, match="plain file name"):
            export.export_version(generator, PROFILE, calibration, report_files, tmp_path, RECIPE, DIGEST,
                                  extra_files={bad: b"x"})


def test_cpu_profile_model_stays_under_10_mb() -> None:
    profile = get_profile("cpu")
    onnx_bytes = export.convert_inspector(build_inspector(build_generator(profile)), profile.patch_size)
    export.check_onnx_io(onnx_bytes, profile.patch_size)
    assert len(onnx_bytes) < 10 * 1024 * 1024


def _identity_graph(input_name: str, output_names: tuple[str, str, str], size: int) -> bytes:
    from onnx import TensorProto, helper

    x = helper.make_tensor_value_info(input_name, TensorProto.FLOAT, ["N", size, size, 1])
    score = helper.make_tensor_value_info(output_names[0], TensorProto.FLOAT, ["N"])
    phi = helper.make_tensor_value_info(output_names[1], TensorProto.FLOAT, ["N"])
    heat = helper.make_tensor_value_info(output_names[2], TensorProto.FLOAT, ["N", size, size, 1])
    nodes = [helper.make_node("ReduceMean", [input_name], [output_names[0]], axes=[1, 2, 3], keepdims=0),
             helper.make_node("ReduceMax", [input_name], [output_names[1]], axes=[1, 2, 3], keepdims=0),
             helper.make_node("Identity", [input_name], [output_names[2]])]
    model = helper.make_model(helper.make_graph(nodes, "g", [x], [score, phi, heat]))
    return model.SerializeToString()


def test_io_check_accepts_the_contract_and_names_what_drifted() -> None:
    good = (io.OUTPUT_SCORE, io.OUTPUT_PHI, io.OUTPUT_HEATMAP)
    export.check_onnx_io(_identity_graph(io.INPUT_PATCHES, good, 32), 32)
    with pytest.raises(ModelVersionError, match="outputs"):
        export.check_onnx_io(_identity_graph(io.INPUT_PATCHES, ("Identity:0", io.OUTPUT_PHI, io.OUTPUT_HEATMAP), 32), 32)
    with pytest.raises(ModelVersionError, match="outputs"):
        export.check_onnx_io(_identity_graph(io.INPUT_PATCHES, (io.OUTPUT_SCORE, "extra", io.OUTPUT_HEATMAP), 32), 32)
    with pytest.raises(ModelVersionError, match="shape"):
        export.check_onnx_io(_identity_graph(io.INPUT_PATCHES, good, 32), 64)


def test_a_native_size_version_takes_the_cameras_pixels_and_answers_the_same_bits() -> None:
    from tests.tiny_inspector import tiny_inspector_onnx

    float_graph = tiny_inspector_onnx(RECIPE.patch_size, 1.2)
    probes = export.probe_patches(RECIPE.patch_size, 6)
    pixel_graph, datatype = export.to_pixel_input(float_graph, RECIPE, RECIPE.patch_size, probes)
    assert datatype == "UINT8"
    export.check_onnx_io(pixel_graph, RECIPE.patch_size, datatype)
    with pytest.raises(ModelVersionError, match="not FLOAT"):
        export.check_onnx_io(pixel_graph, RECIPE.patch_size)
    # a resampled profile's patches are not crops: it keeps float32 input
    small = tiny_inspector_onnx(64, 1.2)
    assert export.to_pixel_input(small, RECIPE, 64, export.probe_patches(64, 6)) == (small, "FP32")


def test_a_pixel_prefix_that_moves_a_bit_is_not_published(monkeypatch: pytest.MonkeyPatch) -> None:
    from tests.tiny_inspector import tiny_inspector_onnx
    from trainer import onnx_pixel_input

    monkeypatch.setattr(onnx_pixel_input, "PIXEL_SCALE", {8: 254.0, 16: 65535.0})
    with pytest.raises(ModelVersionError, match="differs from the float graph"):
        export.to_pixel_input(tiny_inspector_onnx(RECIPE.patch_size), RECIPE, RECIPE.patch_size,
                              export.probe_patches(RECIPE.patch_size, 6))
