#!/usr/bin/env bash
# Build the TensorRT plan (model.plan) of every `inspector` version that lacks one.
#
# WHY HERE AND NOW: a TensorRT plan is tied to the GPU architecture and the
# TensorRT version that built it (an A100 plan does not run on the line's A4500).
# The trainer therefore ships ONNX + calibration only, and this script runs ON THE
# TARGET GPU, inside the same Triton image that will serve the plan (compose
# service `plan-builder`, a one-shot that Triton waits for):
#
#   docker compose run --rm plan-builder              # all versions lacking a plan
#   scripts/build_trt_plan.sh /models --fp16          # by hand inside the image
#   scripts/build_trt_plan.sh model_repository --dry-run   # print the commands only
#
# Engine profile: batch = patches per request, 1..64 (optimum 60, one acquisition),
# patch side from the version's calibration.json. Each plan is written to a temp
# file beside it and renamed into place, so Triton never sees half a plan. Cannot
# run on a machine without an NVIDIA GPU and trtexec (use --dry-run there).
# Exit status: 0 when every version has a plan, 1 when a build failed, 2 on bad usage.
set -euo pipefail

usage() { echo "usage: $0 [REPOSITORY] [--model NAME] [--fp16] [--dry-run] [--min N] [--opt N] [--max N]" >&2; exit 2; }

repository=${MODEL_REPOSITORY:-/models}
model=inspector
input=patches          # vialguard.inspector_io.INPUT_PATCHES (tests/unit/test_build_trt_plan.py)
min_batch=1 opt_batch=60 max_batch=64   # vialguard.inspector_io.MAX_BATCH = 64
fp16=0 dry_run=0
while [ $# -gt 0 ]; do
  case "$1" in
    --model) model=${2:?--model needs a name}; shift 2 ;;
    --fp16) fp16=1; shift ;;
    --dry-run) dry_run=1; shift ;;
    --min) min_batch=${2:?}; shift 2 ;;
    --opt) opt_batch=${2:?}; shift 2 ;;
    --max) max_batch=${2:?}; shift 2 ;;
    -h|--help) usage ;;
    -*) echo "unknown option $1" >&2; usage ;;
    *) repository=$1; shift ;;
  esac
done
for n in "$min_batch" "$opt_batch" "$max_batch"; do
  [[ "$n" =~ ^[1-9][0-9]*$ ]] || { echo "batch sizes must be positive integers, got '$n'" >&2; exit 2; }
done
if [ "$min_batch" -gt "$opt_batch" ] || [ "$opt_batch" -gt "$max_batch" ]; then
  echo "batch sizes must satisfy min <= opt <= max, got $min_batch/$opt_batch/$max_batch" >&2; exit 2
fi
model_dir=$repository/$model
[ -d "$model_dir" ] || { echo "no model directory $model_dir" >&2; exit 2; }

trtexec=${TRTEXEC:-}
if [ "$dry_run" = 0 ]; then
  [ -n "$trtexec" ] || trtexec=$(command -v trtexec || true)
  [ -n "$trtexec" ] || [ ! -x /usr/src/tensorrt/bin/trtexec ] || trtexec=/usr/src/tensorrt/bin/trtexec
  [ -n "$trtexec" ] || { echo "trtexec not found: run this inside the Triton image on the target GPU (or set TRTEXEC)" >&2; exit 2; }
fi

patch_side() {  # the version's patch side, from the calibration that belongs to it
  python3 -c 'import json, sys; print(int(json.load(open(sys.argv[1]))["patch_size"]))' "$1/calibration.json"
}

failed=0
for version in $(ls "$model_dir" | grep -E '^[0-9]+$' | sort -n); do
  dir=$model_dir/$version
  if [ -f "$dir/model.plan" ]; then echo "[plan] $model/$version: plan present"; continue; fi
  if [ ! -f "$dir/model.onnx" ] || [ ! -f "$dir/calibration.json" ]; then
    echo "[plan] $model/$version: incomplete (model.onnx or calibration.json missing), skipped" >&2; failed=1; continue
  fi
  p=$(patch_side "$dir")
  tmp=$dir/.model.plan.tmp.$$
  cmd=("${trtexec:-trtexec}" "--onnx=$dir/model.onnx" "--saveEngine=$tmp"
       "--minShapes=$input:${min_batch}x${p}x${p}x1" "--optShapes=$input:${opt_batch}x${p}x${p}x1"
       "--maxShapes=$input:${max_batch}x${p}x${p}x1")
  [ "$fp16" = 0 ] || cmd+=(--fp16)
  if [ "$dry_run" = 1 ]; then echo "${cmd[*]} && mv $tmp $dir/model.plan"; continue; fi
  echo "[plan] $model/$version: building (${p}px patches, batch $min_batch..$max_batch)"
  if "${cmd[@]}" > "$dir/.trtexec.log" 2>&1 && mv -f "$tmp" "$dir/model.plan"; then
    echo "[plan] $model/$version: model.plan written"
  else
    echo "[plan] $model/$version: trtexec failed, see $dir/.trtexec.log" >&2; rm -f "$tmp"; failed=1
  fi
done
exit "$failed"
