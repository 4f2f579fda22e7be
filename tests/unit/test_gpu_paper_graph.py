"""The GPU benchmark's graph handling (benchmarks.gpu_paper): what travels, and what onnx2torch is handed.

The timing itself needs a GPU and PyTorch; these check, with ONNX Runtime, that the graph
the GPU times is the one exported: weights stripped and refilled keep every shape and
scale, the ConvTranspose rewrite changes no output, and the FLOP count is the textbook one.
"""
from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from benchmarks.gpu_paper import crop_after_conv_transpose, matrix_flops_per_patch, refill_weights, strip_weights


def _graph(pads: list[int], cin: int = 3, cout: int = 5, side: int = 8) -> onnx.ModelProto:
    """x [N, cin, side, side] -> Conv 3x3 (pads 1) -> ConvTranspose 3x3 stride 2 (``pads``)."""
    rng = np.random.default_rng(1)
    w_conv = numpy_helper.from_array(rng.normal(0, 0.3, (cout, cin, 3, 3)).astype(np.float32), "w_conv")
    w_up = numpy_helper.from_array(rng.normal(0.1, 0.2, (cout, 2, 3, 3)).astype(np.float32), "w_up")
    nodes = [helper.make_node("Conv", ["x", "w_conv"], ["h"], pads=[1, 1, 1, 1], name="Conv"),
             helper.make_node("ConvTranspose", ["h", "w_up"], ["y"], strides=[2, 2], pads=pads, name="And")]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", cin, side, side])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 2, "H", "W"])], [w_conv, w_up])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def _run(model: onnx.ModelProto, x: np.ndarray) -> np.ndarray:
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return session.run(None, {"x": x})[0]


@pytest.mark.parametrize("pads", [[0, 0, 1, 1], [1, 0, 0, 1], [1, 1, 0, 0]])
def test_an_unequally_padded_conv_transpose_becomes_a_crop_with_the_same_output(pads: list[int]) -> None:
    model = _graph(pads)
    x = np.random.default_rng(0).normal(size=(2, 3, 8, 8)).astype(np.float32)
    expected = _run(model, x)
    assert crop_after_conv_transpose(model) == 1
    node = next(n for n in model.graph.node if n.op_type == "ConvTranspose")
    assert list(next(a for a in node.attribute if a.name == "pads").ints) == [0, 0, 0, 0]
    np.testing.assert_array_equal(_run(model, x), expected)


def test_equal_pads_are_left_alone() -> None:
    model = _graph([1, 1, 1, 1])
    assert crop_after_conv_transpose(model) == 0
    assert [n.op_type for n in model.graph.node] == ["Conv", "ConvTranspose"]


def test_stripped_weights_come_back_with_their_shape_and_scale() -> None:
    model = _graph([0, 0, 1, 1], cin=16, cout=32)
    original = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}
    stripped = strip_weights(model, kept_elements=500)                  # 4608 and 576 elements
    assert sorted(stripped) == ["w_conv", "w_up"]
    assert all(not t.raw_data for t in model.graph.initializer if t.name in stripped)
    assert len(model.SerializeToString()) < 1000
    refill_weights(model, stripped)
    for tensor in model.graph.initializer:
        values = numpy_helper.to_array(tensor)
        assert values.shape == original[tensor.name].shape
        assert values.mean() == pytest.approx(original[tensor.name].mean(), abs=0.03)
        assert values.std() == pytest.approx(original[tensor.name].std(), rel=0.1)
    x = np.random.default_rng(0).normal(size=(1, 16, 8, 8)).astype(np.float32)
    assert _run(model, x).shape == (1, 2, 16, 16)          # (8 - 1) * 2 + 3 - 1


def test_small_tensors_travel_untouched() -> None:
    model = _graph([0, 0, 1, 1])                                         # 135 and 90 elements
    before = model.SerializeToString()
    assert strip_weights(model, kept_elements=200) == {}
    assert model.SerializeToString() == before


def test_the_flop_count_is_two_per_multiply_add() -> None:
    cin, cout, side = 3, 5, 8
    model = _graph([0, 0, 1, 1], cin, cout, side)
    conv = 2 * (cout * side * side) * (cin * 3 * 3)                     # each output: cin*3*3 products
    up = 2 * (cout * side * side) * (2 * 3 * 3)                         # each input feeds cout/g*3*3 outputs
    assert matrix_flops_per_patch(model, batch=4) == pytest.approx(conv + up)
