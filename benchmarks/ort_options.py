"""Faster CPU inference, if accuracy holds: ONNX Runtime options and INT8 against the served float32.

On one version's model.onnx and simulated held-out acquisitions (half defective),
each variant is timed per 60-patch acquisition and compared with what is served
today (float32, ORT_ENABLE_ALL, the Triton CPU config's threads): the largest score
and phi difference (invariant 2 allows 1e-4) and the acquisitions whose decision
(any patch over its region's serving threshold) changes. Variants:

- graph optimisation levels DISABLE_ALL / BASIC / EXTENDED / ALL;
- ALL with intra_op_num_threads 1 and 2, and with the parallel executor;
- INT8, static QDQ (onnxruntime.quantization.quantize_static, per-channel weights),
  calibrated on good acquisitions rendered with another seed; only the generator's
  Conv/ConvTranspose/MatMul are quantized, never the SSIM and local-score windows.

BF16: ONNX Runtime's CPU execution provider has no BF16 convolution kernels on x86
(onnxruntime 1.32), so there is nothing to time; reported as such.

Prints figures only and adopts nothing: the served path changes only if a variant
keeps every decision and the 1e-4 contract (see README).

    python -m benchmarks.ort_options [--repository model_repository] [--version N] [--acquisitions 10]
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from benchmarks.machine import this_machine
from vialguard.inspector_io import (INPUT_PATCHES, LOCAL_SCORE_FILENAME, MODEL_NAME, ONNX_FILENAME, OUTPUT_PHI,
                                    OUTPUT_SCORE)
from vialguard.model_repository import latest_version, load_version_calibration
from vialguard.patching import acquisition_labels, cut_acquisition_pixels, select_inspected, to_unit_float
from vialguard.recipe import DEFAULT_RECIPE_ID, load_recipe

SSIM_WINDOW_NODES = ("depthwise", "depthwise_1", "Conv2D", "Conv2D_1")  # the local score's and SSIM's windows
GENERATOR_OPS = ["Conv", "ConvTranspose", "MatMul"]


def session(model: Path | bytes, level: str = "ORT_ENABLE_ALL", threads: int = 0, parallel: bool = False):  # type: ignore[no-untyped-def]
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.graph_optimization_level = getattr(ort.GraphOptimizationLevel, level)
    options.intra_op_num_threads = threads
    if parallel:
        options.execution_mode = ort.ExecutionMode.ORT_PARALLEL
    return ort.InferenceSession(model if isinstance(model, bytes) else str(model), options,
                                providers=["CPUExecutionProvider"])


def run_all(sess, inputs: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray, list[float]]:  # type: ignore[no-untyped-def]
    """(scores [A, 60], phi [A, 60], ms per acquisition) after one warm-up call."""
    sess.run([OUTPUT_SCORE], {INPUT_PATCHES: inputs[0]})
    scores, phis, times = [], [], []
    for x in inputs:
        t0 = time.perf_counter()
        score, phi = sess.run([OUTPUT_SCORE, OUTPUT_PHI], {INPUT_PATCHES: x})
        times.append((time.perf_counter() - t0) * 1e3)
        scores.append(score)
        phis.append(phi)
    return np.stack(scores), np.stack(phis), times


def quantize_int8(model_path: Path, calibration: list[np.ndarray], out: Path) -> Path:
    """Static QDQ INT8 of the generator's convolutions and matmuls, calibrated on ``calibration``."""
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self._batches = iter(calibration)

        def get_next(self) -> dict[str, np.ndarray] | None:
            batch = next(self._batches, None)
            return None if batch is None else {INPUT_PATCHES: batch}

    prepared = out.with_suffix(".pre.onnx")
    quant_pre_process(str(model_path), str(prepared), skip_symbolic_shape=True)
    quantize_static(str(prepared), str(out), Reader(), quant_format=QuantFormat.QDQ, per_channel=True,
                    activation_type=QuantType.QInt8, weight_type=QuantType.QInt8,
                    op_types_to_quantize=GENERATOR_OPS, nodes_to_exclude=list(SSIM_WINDOW_NODES))
    return out


def main(argv: list[str] | None = None) -> int:
    from benchmarks.stack import render_frames
    from vialguard.simulator.kit import make_kit

    p = argparse.ArgumentParser(prog="python -m benchmarks.ort_options", description=__doc__.split("\n\n")[0])
    p.add_argument("--repository", type=Path, default=Path("model_repository"))
    p.add_argument("--version", type=int, default=None)
    p.add_argument("--acquisitions", type=int, default=10, help="held-out acquisitions, half defective")
    p.add_argument("--calibration", type=int, default=4, help="good acquisitions INT8 is calibrated on")
    p.add_argument("--no-int8", action="store_true")
    p.add_argument("--recipe", default=DEFAULT_RECIPE_ID)
    a = p.parse_args(argv)
    print(this_machine().line(), flush=True)
    recipe = load_recipe(a.recipe)
    version = a.version if a.version is not None else latest_version(a.repository)
    if version is None:
        print(f"no version in {a.repository}", file=sys.stderr)
        return 2
    model_path = a.repository / MODEL_NAME / str(version) / ONNX_FILENAME
    calibration = load_version_calibration(a.repository, version)
    thresholds = calibration.serving_thresholds.as_array()[[lb.region for lb in acquisition_labels(recipe)]]
    float_input = session(model_path).get_inputs()[0].type == "tensor(float)"
    local_path = model_path.parent / LOCAL_SCORE_FILENAME
    if local_path.is_file():  # invariant 2 is read in units of the one SSIM (as export and the e2e test do)
        from vialguard.local_score import LocalScoreModel

        unit = LocalScoreModel.from_bytes(local_path.read_bytes()).score_unit
    else:
        unit = 1.0

    def model_inputs(frames_list: list[np.ndarray]) -> list[np.ndarray]:
        pixels = [cut_acquisition_pixels(select_inspected(f, recipe), recipe) for f in frames_list]
        return [to_unit_float(x) for x in pixels] if float_input else pixels

    print(f"rendering {a.acquisitions} held-out acquisitions and {a.calibration} calibration goods ...", flush=True)
    held_out = model_inputs([f for _, f in render_frames(recipe, a.acquisitions)])
    goods = model_inputs([acq.frames for acq in make_kit(a.calibration, 0, runs=1, seed=20261201, recipe=recipe)])

    served = session(model_path)
    run_all(served, held_out)  # one untimed pass: the first session's first calls ran slow here
    ref_scores, ref_phi, ref_ms = run_all(served, held_out)
    ref_reject = (ref_scores > thresholds).any(axis=1)
    variants: list[tuple[str, object]] = [
        ("float32 DISABLE_ALL", session(model_path, "ORT_DISABLE_ALL")),
        ("float32 BASIC", session(model_path, "ORT_ENABLE_BASIC")),
        ("float32 EXTENDED", session(model_path, "ORT_ENABLE_EXTENDED")),
        ("float32 ALL, 1 thread", session(model_path, threads=1)),
        ("float32 ALL, 2 threads", session(model_path, threads=2)),
        ("float32 ALL, parallel exec", session(model_path, parallel=True)),
        ("served again (drift check)", served),
    ]
    with tempfile.TemporaryDirectory(prefix="vialguard-int8-") as scratch:
        if not a.no_int8:
            print("quantizing (static QDQ INT8, per-channel) ...", flush=True)
            try:
                int8 = quantize_int8(model_path, goods, Path(scratch) / "int8.onnx")
                variants.append(("INT8 QDQ generator", session(int8)))
            except Exception as exc:  # noqa: BLE001 - a benchmark reports, it does not crash
                print(f"  INT8 quantization failed: {type(exc).__name__}: {exc}", flush=True)
        print(f"\nversion {version} ({model_path}), {len(held_out)} held-out acquisitions "
              f"({int(ref_reject.sum())} rejected by the served float32), serving thresholds '{calibration.serving}'")
        print(f"score differences in SSIM units (x {unit:.4f}, the most map units one unit of the local score stands for); "
              f"invariant 2 allows 1e-4")
        print(f"{'variant':<28} {'p50 ms':>8} {'p99 ms':>8} {'x served':>9} {'max|dscore|':>12} {'max|dphi|':>10} "
              f"{'decisions changed':>18}")
        print(f"{'served: float32 ALL':<28} {np.percentile(ref_ms, 50):8.1f} {np.percentile(ref_ms, 99):8.1f} "
              f"{1.0:9.2f} {0.0:12.2e} {0.0:10.2e} {0:>18d}")
        for name, sess in variants:
            scores, phi, ms = run_all(sess, held_out)
            changed = int(np.count_nonzero((scores > thresholds).any(axis=1) != ref_reject))
            print(f"{name:<28} {np.percentile(ms, 50):8.1f} {np.percentile(ms, 99):8.1f} "
                  f"{np.percentile(ref_ms, 50) / np.percentile(ms, 50):9.2f} "
                  f"{float(np.abs(scores - ref_scores).max()) * unit:12.2e} {float(np.abs(phi - ref_phi).max()):10.2e} "
                  f"{changed:>18d}", flush=True)
    print("BF16: not timed; onnxruntime's CPU execution provider has no BF16 Conv kernels on x86.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
