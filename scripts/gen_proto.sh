#!/usr/bin/env bash
# Regenerate the Python stubs of the camera-facing gRPC API.
#
# proto/vialguard/v1/inspection.proto -> vialguard/v1/inspection_pb2{,_grpc}.py(i)
# The stubs are committed (small, and a service must start without a build
# step); tests/unit/test_proto_generated.py fails when they no longer match the
# .proto, so run this after every change to it.
#
# Usage: scripts/gen_proto.sh [OUT_DIR]   (default: the repository root)
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
out="${1:-$root}"
python="${PYTHON:-$root/.venv/bin/python}"
cd "$root"
mkdir -p "$out/vialguard/v1"
"$python" -m grpc_tools.protoc \
  -I proto \
  --python_out="$out" \
  --pyi_out="$out" \
  --grpc_python_out="$out" \
  proto/vialguard/v1/inspection.proto
