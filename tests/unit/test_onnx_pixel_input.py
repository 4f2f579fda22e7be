"""The in-graph pixel scaling equals vialguard.patching's, bit for bit, through ONNX Runtime."""
from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper

from tests.tiny_inspector import publish_tiny_version, tiny_inspector_onnx
from trainer.onnx_pixel_input import prepend_pixel_scaling, rewrite_version
from vialguard.inspector_io import INPUT_PATCHES, MANIFEST_FILENAME, OUTPUTS
from vialguard.model_repository import version_dir, version_input_datatype
from vialguard.patching import cut_acquisition, cut_acquisition_pixels, to_unit_float
from vialguard.recipe import load_recipe

RECIPE = load_recipe()


def _identity_graph() -> bytes:
    """patches (float) -> its float copy: after the rewrite, the graph's scaled pixels themselves."""
    graph = helper.make_graph(
        [helper.make_node("Identity", [INPUT_PATCHES], ["unit"])], "identity",
        [helper.make_tensor_value_info(INPUT_PATCHES, TensorProto.FLOAT, ["N", 256, 256, 1])],
        [helper.make_tensor_value_info("unit", TensorProto.FLOAT, ["N", 256, 256, 1])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
    return model.SerializeToString()


def _frames(dtype: type, seed: int) -> list[np.ndarray]:
    top = int(np.iinfo(dtype).max)
    rng = np.random.default_rng(seed)
    frames = [rng.integers(0, top, (RECIPE.frame_height, RECIPE.frame_width), dtype=dtype, endpoint=True)
              for _ in range(3)]
    frames[1][0, :2] = (0, top)
    return frames


@pytest.mark.parametrize(("dtype", "bits"), [(np.uint8, 8), (np.uint16, 16)], ids=["MONO8", "MONO16"])
@pytest.mark.parametrize("level", [ort.GraphOptimizationLevel.ORT_DISABLE_ALL, ort.GraphOptimizationLevel.ORT_ENABLE_ALL],
                         ids=["unoptimised", "optimised"])
def test_the_graph_scales_random_frames_exactly_as_patching_does(dtype: type, bits: int,
                                                                  level: ort.GraphOptimizationLevel) -> None:
    recipe = dataclasses.replace(RECIPE, bit_depth=bits)
    frames = _frames(dtype, seed=bits)
    options = ort.SessionOptions()
    options.graph_optimization_level = level
    session = ort.InferenceSession(prepend_pixel_scaling(_identity_graph(), bits), options,
                                   providers=["CPUExecutionProvider"])
    assert session.get_inputs()[0].type == f"tensor(uint{bits})"
    (served,) = session.run(None, {INPUT_PATCHES: cut_acquisition_pixels(frames, recipe)})
    np.testing.assert_array_equal(served.view(np.uint32), cut_acquisition(frames, recipe).view(np.uint32))


def test_a_rewritten_model_answers_the_same_bits_as_the_float_model_on_scaled_pixels() -> None:
    pixels = cut_acquisition_pixels(_frames(np.uint8, seed=3), RECIPE)
    float_session = ort.InferenceSession(tiny_inspector_onnx(256, 1.3), providers=["CPUExecutionProvider"])
    pixel_session = ort.InferenceSession(tiny_inspector_onnx(256, 1.3, bit_depth=8), providers=["CPUExecutionProvider"])
    want = float_session.run(list(OUTPUTS), {INPUT_PATCHES: to_unit_float(pixels)})
    got = pixel_session.run(list(OUTPUTS), {INPUT_PATCHES: pixels})
    for name, a, b in zip(OUTPUTS, got, want):
        np.testing.assert_array_equal(a, b, err_msg=name)


def test_only_a_float_patches_input_is_rewritten() -> None:
    once = prepend_pixel_scaling(_identity_graph(), 8)
    with pytest.raises(ValueError, match="no float32 input"):
        prepend_pixel_scaling(once, 8)
    with pytest.raises(ValueError, match="8 or 16"):
        prepend_pixel_scaling(_identity_graph(), 12)


def test_rewrite_version_publishes_a_new_version_and_leaves_the_old_one(tmp_path: Path) -> None:
    old = publish_tiny_version(tmp_path, 32, gain=1.0, threshold=0.2)
    before = (version_dir(tmp_path, old) / "model.onnx").read_bytes()
    new = rewrite_version(tmp_path, old, 8)
    assert new == old + 1 and (version_dir(tmp_path, old) / "model.onnx").read_bytes() == before
    assert version_input_datatype(tmp_path, old) == "FP32" and version_input_datatype(tmp_path, new) == "UINT8"
    manifest = json.loads((version_dir(tmp_path, new) / MANIFEST_FILENAME).read_text())
    assert manifest["derived_from"]["version"] == old
    graph = onnx.load(str(version_dir(tmp_path, new) / "model.onnx")).graph
    assert graph.input[0].type.tensor_type.elem_type == TensorProto.UINT8
    assert (version_dir(tmp_path, new) / "calibration.json").read_bytes() == \
        (version_dir(tmp_path, old) / "calibration.json").read_bytes()


def test_the_heatmap_graph_of_the_committed_version_answers_a_few_patches_as_the_whole_graph() -> None:
    """The committed version fuses frames (whole acquisitions only); its heatmap subgraph takes any number."""
    from trainer.onnx_heatmap_graph import heatmap_subgraph
    from vialguard.inspector_io import OUTPUT_HEATMAP
    from vialguard.model_repository import latest_version

    repository = Path(__file__).resolve().parents[2] / "model_repository"
    newest = latest_version(repository) or 0
    model = (version_dir(repository, newest) / "model.onnx").read_bytes()
    pixels = cut_acquisition_pixels(_frames(np.uint8, seed=12), RECIPE)
    takes = to_unit_float if version_input_datatype(repository, newest) == "FP32" else (lambda x: x)
    whole = ort.InferenceSession(model, providers=["CPUExecutionProvider"])
    part = ort.InferenceSession(heatmap_subgraph(model), providers=["CPUExecutionProvider"])
    flagged = [4, 17, 42]
    want = whole.run([OUTPUT_HEATMAP], {INPUT_PATCHES: takes(pixels)})[0][flagged]
    np.testing.assert_array_equal(part.run([OUTPUT_HEATMAP], {INPUT_PATCHES: takes(pixels[flagged])})[0], want)
    with pytest.raises(Exception, match="reshape"):  # why the subgraph exists: the whole graph refuses 3 patches
        whole.run([OUTPUT_HEATMAP], {INPUT_PATCHES: takes(pixels[flagged])})
