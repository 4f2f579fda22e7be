"""Rollout of a version: the pinned config it sends, the versions it refuses, its command line."""
from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest
from google.protobuf import json_format
from tritonclient.grpc import model_config_pb2

from tests.tiny_inspector import publish_tiny_version
from vialguard.errors import ModelVersionError
from vialguard.inspector_io import MODEL_NAME
from vialguard.model_repository import version_dir, version_input_datatype
from vialguard_stack.rollout import check_version_complete, config_from_file, main, pinned_config

MODEL_DIR = Path(__file__).resolve().parents[2] / "model_repository" / MODEL_NAME
Config = model_config_pb2.ModelConfig


def test_rollout_pins_one_version_and_its_patch_side() -> None:
    base = config_from_file(MODEL_DIR.parent, "cpu")
    pinned = pinned_config(base, version=7, patch_size=128)
    assert pinned["version_policy"] == {"specific": {"versions": [7]}}
    assert [t["dims"] for t in pinned["input"]] == [[128, 128, 1]]
    assert "latest" in base["version_policy"]  # the base is left as it was
    # what Triton receives parses back into a valid ModelConfig
    parsed = json_format.Parse(json.dumps(pinned), Config())
    assert list(parsed.version_policy.specific.versions) == [7]


@pytest.mark.parametrize(("bit_depth", "expected"), [(None, "TYPE_FP32"), (8, "TYPE_UINT8"), (16, "TYPE_UINT16")])
def test_rollout_serves_each_version_with_the_input_type_its_graph_takes(
        tmp_path: Path, bit_depth: int | None, expected: str) -> None:
    version = publish_tiny_version(tmp_path, 32, gain=1.0, threshold=0.2, bit_depth=bit_depth)
    datatype = version_input_datatype(tmp_path, version)
    pinned = pinned_config(config_from_file(MODEL_DIR.parent, "cpu"), version, 32, datatype)
    parsed = json_format.Parse(json.dumps(pinned), Config())
    assert model_config_pb2.DataType.Name(parsed.input[0].data_type) == expected
    assert {model_config_pb2.DataType.Name(t.data_type) for t in parsed.output} == {"TYPE_FP32"}


def test_the_committed_version_is_served_with_the_input_type_its_graph_takes() -> None:
    import onnx

    from vialguard.model_repository import latest_version

    newest = latest_version(MODEL_DIR.parent)
    assert newest is not None
    graph = onnx.load(str(version_dir(MODEL_DIR.parent, newest) / "model.onnx")).graph
    elem = onnx.TensorProto.DataType.Name(graph.input[0].type.tensor_type.elem_type)
    assert version_input_datatype(MODEL_DIR.parent, newest) == {"FLOAT": "FP32"}.get(elem, elem)


def test_rollout_refuses_an_incomplete_version(tmp_path: Path) -> None:
    version = publish_tiny_version(tmp_path, 32, gain=1.0, threshold=0.2)
    cpu, gpu = config_from_file(MODEL_DIR.parent, "cpu"), config_from_file(MODEL_DIR.parent, "gpu")
    assert check_version_complete(tmp_path, version, cpu) == 32
    with pytest.raises(ModelVersionError, match="model.plan.*build_trt_plan.sh"):
        check_version_complete(tmp_path, version, gpu)
    (version_dir(tmp_path, version) / "model.py").unlink()
    with pytest.raises(ModelVersionError, match=r"missing \['model.py'\]"):
        check_version_complete(tmp_path, version, cpu)


@pytest.mark.parametrize(("break_it", "reason"), [
    (lambda d: (d / "calibration.json").unlink(), "incomplete, missing ['calibration.json']"),
    (lambda d: shutil.rmtree(d), "has no version"),
])
def test_the_command_refuses_with_exit_2_and_says_why(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], break_it: Callable[[Path], object], reason: str
) -> None:
    shutil.copytree(MODEL_DIR / "configs", tmp_path / MODEL_NAME / "configs")
    version = publish_tiny_version(tmp_path, 32, gain=1.0, threshold=0.2)
    break_it(version_dir(tmp_path, version))
    argv = ["--triton", "127.0.0.1:1", "--version", str(version), "--repository", str(tmp_path), "--config-name", "cpu"]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "rollout refused" in err and reason in err
