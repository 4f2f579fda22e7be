"""Roll a published `inspector` version out to a running Triton (explicit model control).

``python -m vialguard_stack.rollout --triton localhost:8001 --version N``

The load request carries a config override that pins ``version_policy: specific
[N]``, the version's own patch side (from its calibration) and the data type its
graph takes for ``patches`` (version.json: UINT8/UINT16 camera pixels, or FP32 for
older versions), and the parameter ``heatmap_graph`` (whether the version ships
heatmap.onnx, so that clients may ask for the heatmaps of a few patches), on top of the
config Triton runs now (cpu or gpu, whatever --model-config-name chose) or of
``configs/<name>.pbtxt`` when none is loaded. Why pin instead of "latest": the
trainer may publish a version that is not meant to serve yet, a rollback is the
same command with the older N, and the version that serves is always the one an
engineer chose. Triton loads N beside the serving version and unloads the old one
only when N is ready, so traffic keeps flowing (tests/integration/test_hot_update.py).

Triton's model-control API is restricted (DESIGN invariant 9: ``--grpc-restricted-protocol``,
see vialguard_stack.triton_server): the load request carries the admin header
``ADMIN_GRPC_HEADER`` with the key from ``--admin-key-file`` or ``VIALGUARD_TRITON_ADMIN_KEY``.

A version directory that is incomplete (no model.onnx or calibration.json, no
model.py for the Python backend, no model.plan for TensorRT) is refused before
Triton is asked anything.
"""
from __future__ import annotations

import argparse
import copy
import json
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import tritonclient.grpc as grpcclient
from google.protobuf import json_format, text_format
from tritonclient.grpc import model_config_pb2
from tritonclient.utils import InferenceServerException

from vialguard.errors import ModelVersionError
from vialguard.inspector_io import (
    CALIBRATION_FILENAME, HEATMAP_GRAPH_PARAMETER, HEATMAP_ONNX_FILENAME, INPUT_PATCHES, MODEL_NAME, ONNX_FILENAME,
    OUTPUT_HEATMAP, PLAN_FILENAME,
)
from vialguard.model_repository import load_version_calibration, model_dir, version_dir, version_input_datatype
from vialguard_stack.triton_server import ADMIN_GRPC_HEADER, ADMIN_KEY_ENV

DEFAULT_REPOSITORY = Path(__file__).resolve().parent.parent / "model_repository"
PYTHON_ADAPTER = "model.py"


def admin_headers(admin_key: str | None = None) -> dict[str, str] | None:
    """The header Triton's restricted model-control API asks for; None where no key is configured."""
    key = admin_key if admin_key is not None else os.environ.get(ADMIN_KEY_ENV, "")
    return {ADMIN_GRPC_HEADER: key} if key else None


@dataclass(frozen=True)
class RolloutResult:
    version: int
    patch_size: int
    load_s: float  # from the load request to Triton reporting the version ready


def config_from_file(repository: Path, config_name: str, model: str = MODEL_NAME) -> dict[str, Any]:
    """``<model>/configs/<name>.pbtxt`` as the JSON a load request's config override takes."""
    path = model_dir(repository, model) / "configs" / f"{config_name}.pbtxt"
    if not path.is_file():
        raise ModelVersionError(f"no Triton config '{config_name}' at {path}")
    message = text_format.Parse(path.read_text(), model_config_pb2.ModelConfig())
    return dict(json_format.MessageToDict(message, preserving_proto_field_name=True))


def required_files(config: dict[str, Any]) -> list[str]:
    """Files a version directory must hold for this config to load it."""
    if config.get("backend") == "python":
        return [ONNX_FILENAME, CALIBRATION_FILENAME, PYTHON_ADAPTER]
    if config.get("platform") == "tensorrt_plan":
        return [ONNX_FILENAME, CALIBRATION_FILENAME, config.get("default_model_filename") or PLAN_FILENAME]
    return [ONNX_FILENAME, CALIBRATION_FILENAME]


def pinned_config(config: dict[str, Any], version: int, patch_size: int, input_datatype: str = "FP32",
                  heatmap_graph: bool = False) -> dict[str, Any]:
    """A copy of `config` serving exactly `version` with `patch_size`-sided patches of `input_datatype`."""
    pinned = copy.deepcopy(config)
    pinned["version_policy"] = {"specific": {"versions": [version]}}
    if config.get("backend") == "python":  # the TensorRT plan has no heatmap-only engine
        pinned.setdefault("parameters", {})[HEATMAP_GRAPH_PARAMETER] = {"string_value": str(heatmap_graph).lower()}
    for tensor in [*pinned.get("input", []), *pinned.get("output", [])]:
        if tensor["name"] in (INPUT_PATCHES, OUTPUT_HEATMAP):
            tensor["dims"] = [patch_size, patch_size, 1]
        if tensor["name"] == INPUT_PATCHES:
            tensor["data_type"] = f"TYPE_{input_datatype}"
    return pinned


def check_version_complete(repository: Path, version: int, config: dict[str, Any], model: str = MODEL_NAME) -> int:
    """Refuse an incomplete version directory; return the version's patch side."""
    directory = version_dir(repository, version, model)
    missing = [name for name in required_files(config) if not (directory / name).is_file()]
    if missing:
        hint = " (build it on the target GPU: scripts/build_trt_plan.sh)" if PLAN_FILENAME in missing else ""
        raise ModelVersionError(f"version {version} in {directory} is incomplete, missing {missing}{hint}")
    return load_version_calibration(repository, version, model).patch_size


def load_version(
    triton_url: str,
    version: int,
    repository: Path = DEFAULT_REPOSITORY,
    config_name: str | None = None,
    timeout_s: float = 300.0,
    model: str = MODEL_NAME,
    admin_key: str | None = None,
) -> RolloutResult:
    """Load `version` of `model` with a pinned version policy and wait until it is ready.

    `repository` is the model repository as this process sees it (for checks); the
    server reads the same directory through its own path. `config_name` picks
    ``configs/<name>.pbtxt`` as the base; by default the config Triton runs now.
    `admin_key`: the key of Triton's restricted model-control API (default: $VIALGUARD_TRITON_ADMIN_KEY).
    """
    client = grpcclient.InferenceServerClient(triton_url)
    headers = admin_headers(admin_key)
    try:
        base = config_from_file(repository, config_name, model) if config_name else _served_config(client, model)
        patch_size = check_version_complete(repository, version, base, model)
        datatype = version_input_datatype(repository, version, model)
        heatmap_graph = (version_dir(repository, version, model) / HEATMAP_ONNX_FILENAME).is_file()
        override = json.dumps(pinned_config(base, version, patch_size, datatype, heatmap_graph))
        started = time.monotonic()
        try:
            client.load_model(model, config=override, headers=headers)
        except InferenceServerException as exc:
            raise ModelVersionError(f"Triton at {triton_url} could not load {model} version {version}: {exc.message()}") from exc
        _wait_version_ready(client, model, version, started + timeout_s)
        return RolloutResult(version, patch_size, time.monotonic() - started)
    finally:
        client.close()


def _served_config(client: grpcclient.InferenceServerClient, model: str) -> dict[str, Any]:
    try:
        reply = client.get_model_config(model, as_json=True)
    except InferenceServerException as exc:
        raise ModelVersionError(
            f"{model} is not loaded, so there is no config to start from; pass --config-name cpu|gpu ({exc.message()})"
        ) from exc
    return dict(reply["config"])


def _wait_version_ready(client: grpcclient.InferenceServerClient, model: str, version: int, deadline: float) -> None:
    while time.monotonic() < deadline:
        try:
            metadata = client.get_model_metadata(model, as_json=True)
            if client.is_model_ready(model, str(version)) and metadata.get("versions") == [str(version)]:
                return
        except InferenceServerException:
            pass  # between unload and load the model may be briefly unknown
        time.sleep(0.05)
    raise ModelVersionError(f"{model} version {version} did not become the only ready version in time")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m vialguard_stack.rollout", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--triton", default="localhost:8001", help="Triton gRPC address (host:port)")
    parser.add_argument("--version", type=int, required=True, help="published version number to serve")
    parser.add_argument("--repository", type=Path, default=DEFAULT_REPOSITORY, help="model repository directory")
    parser.add_argument("--config-name", choices=("cpu", "gpu"), default=None,
                        help="base config file (default: the config Triton serves now)")
    parser.add_argument("--timeout", type=float, default=300.0, help="seconds to wait for the load")
    parser.add_argument("--admin-key-file", type=Path, default=None,
                        help=f"file holding Triton's model-control key (default: ${ADMIN_KEY_ENV})")
    args = parser.parse_args(argv)
    key = args.admin_key_file.read_text().strip() if args.admin_key_file else None
    try:
        result = load_version(args.triton, args.version, args.repository, args.config_name, args.timeout,
                              admin_key=key)
    except ModelVersionError as exc:
        print(f"rollout refused: {exc}", file=sys.stderr)
        return 2
    print(f"{MODEL_NAME} version {result.version} serving ({result.patch_size}px patches), "
          f"loaded in {result.load_s:.2f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
