"""The committed Triton configs of `inspector` agree with the exported graph and with each other."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import onnx
import pytest
from google.protobuf import text_format
from tritonclient.grpc import model_config_pb2

from tests.tiny_inspector import tiny_inspector_onnx
from vialguard.inspector_io import (INPUT_PATCHES, MAX_BATCH, MODEL_NAME, OUTPUT_HEATMAP, OUTPUT_SCORE, OUTPUTS,
                                    PLAN_FILENAME)
from vialguard.model_repository import latest_version, version_input_datatype
from vialguard.triton_backend import triton_backend_files

MODEL_DIR = Path(__file__).resolve().parents[2] / "model_repository" / MODEL_NAME
CONFIG_NAMES = ("cpu", "gpu")
Config = model_config_pb2.ModelConfig


def parse(path: Path) -> Any:
    return text_format.Parse(path.read_text(), Config())


@pytest.fixture(params=CONFIG_NAMES)
def config(request: pytest.FixtureRequest) -> Any:
    return parse(MODEL_DIR / "configs" / f"{request.param}.pbtxt")


def test_tensor_names_and_types_are_those_of_inspector_io(config: Any) -> None:
    assert config.name == MODEL_NAME
    assert [t.name for t in config.input] == [INPUT_PATCHES]
    assert sorted(t.name for t in config.output) == sorted(OUTPUTS)
    assert {t.data_type for t in config.output} == {model_config_pb2.TYPE_FP32}
    assert config.input[0].data_type in (model_config_pb2.TYPE_FP32, model_config_pb2.TYPE_UINT8,
                                         model_config_pb2.TYPE_UINT16)


def test_the_default_config_takes_the_input_type_of_the_newest_committed_version() -> None:
    """At a boot without a rollout Triton loads the newest version with config.pbtxt as it is."""
    newest = latest_version(MODEL_DIR.parent)
    assert newest is not None
    want = f"TYPE_{version_input_datatype(MODEL_DIR.parent, newest)}"
    for path in (MODEL_DIR / "config.pbtxt", MODEL_DIR / "configs" / "cpu.pbtxt"):
        assert model_config_pb2.DataType.Name(parse(path).input[0].data_type) == want, path


def test_one_request_carries_up_to_max_batch_patches(config: Any) -> None:
    assert config.max_batch_size == MAX_BATCH  # 60 patches per acquisition fit one request
    patches = list(config.input[0].dims)
    heatmap = next(list(t.dims) for t in config.output if t.name == OUTPUT_HEATMAP)
    score = next(t for t in config.output if t.name == OUTPUT_SCORE)
    assert len(patches) == 3 and patches[-1] == 1 and patches[0] == patches[1]  # [P, P, 1] per patch
    assert heatmap == patches
    assert list(score.reshape.shape) == []  # one score per patch: [N]


def test_the_version_policy_serves_a_single_version(config: Any) -> None:
    assert config.version_policy.latest.num_versions == 1


def test_gpu_config_is_a_dynamically_batched_tensorrt_plan_on_the_gpu() -> None:
    gpu = parse(MODEL_DIR / "configs" / "gpu.pbtxt")
    assert gpu.platform == "tensorrt_plan" and gpu.default_model_filename == PLAN_FILENAME
    assert gpu.HasField("dynamic_batching")
    assert [g.kind for g in gpu.instance_group] == [model_config_pb2.ModelInstanceGroup.KIND_GPU]


def test_cpu_config_runs_the_python_backend_on_the_cpu() -> None:
    cpu = parse(MODEL_DIR / "configs" / "cpu.pbtxt")
    assert cpu.backend == "python" and not cpu.platform
    # Batching only for the queue policy: no delay, so requests still run one by one (a bad one fails alone).
    assert cpu.dynamic_batching.max_queue_delay_microseconds == 0
    assert [g.kind for g in cpu.instance_group] == [model_config_pb2.ModelInstanceGroup.KIND_CPU]


def test_default_config_is_the_cpu_config() -> None:
    assert parse(MODEL_DIR / "config.pbtxt") == parse(MODEL_DIR / "configs" / "cpu.pbtxt")


@pytest.mark.parametrize("name", CONFIG_NAMES)
def test_config_matches_the_exported_graph(name: str) -> None:
    config = parse(MODEL_DIR / "configs" / f"{name}.pbtxt")
    side = config.input[0].dims[0] if config.input[0].dims[0] > 0 else 64
    graph = onnx.load_from_string(tiny_inspector_onnx(side)).graph

    def dims(value_info: Any) -> list[int]:
        return [d.dim_value if d.HasField("dim_value") else -1 for d in value_info.type.tensor_type.shape.dim]

    onnx_io = {v.name: dims(v) for v in [*graph.input, *graph.output]}
    assert set(onnx_io) == {INPUT_PATCHES, *OUTPUTS}
    for tensor in [*config.input, *config.output]:
        per_patch = list(tensor.reshape.shape) if tensor.HasField("reshape") else list(tensor.dims)
        assert onnx_io[tensor.name][0] == -1  # the batch dimension is free
        assert len(onnx_io[tensor.name][1:]) == len(per_patch)
        assert all(c in (-1, o) for c, o in zip(per_patch, onnx_io[tensor.name][1:]))


def test_the_backend_adapter_is_self_contained_python() -> None:
    files = triton_backend_files()
    source = files["model.py"].decode()
    compile(source, "model.py", "exec")
    assert "vialguard" not in [line.split()[1].split(".")[0] for line in source.splitlines()
                               if line.startswith(("import ", "from "))]  # .venv-triton has no vialguard
    assert "class TritonPythonModel" in source


def test_the_newest_committed_version_carries_the_current_adapter() -> None:
    """A version directory holds its own copy of model.py (Triton loads nothing else): the one the
    demo serves must be today's, with the caller's-deadline check (DESIGN invariant 8)."""
    newest = latest_version(MODEL_DIR.parent)
    assert newest is not None
    assert (MODEL_DIR / str(newest) / "model.py").read_bytes() == triton_backend_files()["model.py"]


def test_the_triton_backend_environment_pins_numpy_below_2() -> None:
    """Triton 2.51's stub answers with EMPTY outputs under numpy 2 (DESIGN section 5)."""
    lines = (MODEL_DIR.parents[1] / "requirements" / "triton-backend.txt").read_text().splitlines()
    pins = dict(line.split("==") for line in lines if "==" in line and not line.startswith("#"))
    assert int(pins["numpy"].split(".")[0]) < 2 and "onnxruntime" in pins


def test_every_config_drops_cancelled_requests_and_sets_no_queue_policy(config: Any) -> None:
    """DESIGN invariant 8: the dynamic batcher drops a request whose caller gave up; Triton 2.51's queue
    policy stalled requests until their timeout, so none is set (measured, see configs/cpu.pbtxt)."""
    assert config.HasField("dynamic_batching")
    assert not config.dynamic_batching.HasField("default_queue_policy")
    assert not config.dynamic_batching.priority_queue_policy
