"""The committed gRPC stubs are exactly what the committed .proto generates.

A stub that drifts from its .proto would let the camera software and the
server disagree on field numbers without any error; this test makes drift a
red build instead.
"""
from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
GENERATED = ("inspection_pb2.py", "inspection_pb2.pyi", "inspection_pb2_grpc.py")


def test_committed_stubs_equal_freshly_generated_ones(tmp_path: Path) -> None:
    if shutil.which("bash") is None:
        pytest.skip("bash is needed to run scripts/gen_proto.sh")
    subprocess.run(
        ["bash", str(ROOT / "scripts" / "gen_proto.sh"), str(tmp_path)],
        check=True,
        env={"PYTHON": sys.executable, "PATH": "/usr/bin:/bin"},
    )
    for name in GENERATED:
        fresh = (tmp_path / "vialguard" / "v1" / name).read_bytes()
        committed = (ROOT / "vialguard" / "v1" / name).read_bytes()
        assert fresh == committed, f"vialguard/v1/{name} is stale: run scripts/gen_proto.sh"


def test_stubs_expose_the_inspection_service_methods() -> None:
    from vialguard.v1 import inspection_pb2

    service = inspection_pb2.DESCRIPTOR.services_by_name["Inspection"]
    methods = {m.name: m for m in service.methods}
    assert set(methods) == {"Inspect", "WatchVerdicts", "GetHeatmaps"}
    assert methods["Inspect"].input_type.full_name == "vialguard.v1.Acquisition"
    assert methods["Inspect"].output_type.full_name == "vialguard.v1.Verdict"
    assert methods["WatchVerdicts"].server_streaming
    assert not methods["Inspect"].server_streaming
