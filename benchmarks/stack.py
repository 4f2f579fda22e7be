"""What each layer of the serving stack costs: bare ONNX Runtime vs Triton vs the whole stack.

In one run, on the same model version, machine and pre-rendered acquisitions:

1. bare ONNX Runtime: the version's model.onnx, with the thread settings of the
   Triton CPU config (the Python backend's model.py reads them the same way),
   on the 60 patches cut by vialguard.patching;
2. Triton `inspector` through tritonclient (preprocessor.inspector_client.TritonInspector);
3. the full stack (local redis-server, tritonserver, aggregator, preprocessor)
   through gRPC Inspect from the simulated camera: inspected frames only, RAW.

Reports acquisitions/s and p50/p99 latency per acquisition for each, the ratios
Triton/bare and stack/bare, where the stack's time goes (the stage timings each
Verdict carries), and what moving the heatmaps costs. Rendering is done once,
before any clock starts; every path warms up first. Prints figures only and
never fails on time: the aims (stack >= 0.9x bare, p99 well inside the 500 ms
slot) are reported as met or not.

    python -m benchmarks.stack [--repository model_repository] [--version N]
                               [--acquisitions 100] [--concurrency 1]
"""
from __future__ import annotations

import argparse
import itertools
import os
import secrets
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from benchmarks.stack_figures import PathFigures, percentile_ms, ratio_lines, stage_lines, table_lines
from vialguard.inspector_io import INPUT_PATCHES, MODEL_NAME, ONNX_FILENAME, OUTPUT_HEATMAP, OUTPUT_SCORE
from vialguard.patching import cut_acquisition, select_inspected
from vialguard.recipe import DEFAULT_RECIPE_ID, Recipe, load_recipe

CALL_TIMEOUT_S = 60.0  # generous: a slow call is measured, not cut off
STAGES = ("decode_ms", "patching_ms", "inference_ms", "queue_ms", "aggregation_ms")


def timed(name: str, call: Callable[[int], float | None], n: int, warmup: int, concurrency: int) -> PathFigures:
    """Run ``call(i)`` for i in [0, n) on ``concurrency`` threads after ``warmup`` untimed calls (i >= n).

    ``call`` returns the latency it measured in ms, or None when the call failed.
    """
    for i in range(n, n + warmup):
        call(i)
    latencies: list[float] = []
    failures = [0]
    lock = threading.Lock()
    indices = itertools.count()

    def worker() -> None:
        while (i := next(indices)) < n:
            latency = call(i)
            with lock:
                if latency is None:
                    failures[0] += 1
                else:
                    latencies.append(latency)

    started = time.perf_counter()
    threads = [threading.Thread(target=worker, name=f"{name}-{k}") for k in range(concurrency)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - started
    return PathFigures(name, np.asarray(latencies), wall, concurrency, failures[0])


def render_frames(recipe: Recipe, distinct: int) -> list[tuple[str, np.ndarray]]:
    """(product_id, 16 frames) of ``distinct`` simulated acquisitions, half of them defective."""
    from vialguard.simulator.kit import make_kit
    from vialguard_stack.kit_source import HELD_OUT_SEED

    kit = make_kit((distinct + 1) // 2, distinct // 2, runs=1, seed=HELD_OUT_SEED, recipe=recipe)
    return [(acq.fields.product_id, acq.frames) for acq in kit]


def backend_threads(repository: Path) -> int:
    """intra_op_num_threads of the Triton CPU config, as the Python backend reads it (0: ORT's default)."""
    from vialguard_stack.local_stack import TRITON_CONFIG
    from vialguard_stack.rollout import config_from_file

    params = config_from_file(repository, TRITON_CONFIG).get("parameters", {})
    return int(params.get("intra_op_num_threads", {}).get("string_value", "0"))


def run_bare(onnx_path: Path, threads: int, patches: list[np.ndarray], n: int, warmup: int,
             concurrency: int) -> PathFigures:
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    session = ort.InferenceSession(str(onnx_path), options, providers=["CPUExecutionProvider"])
    outputs = [OUTPUT_SCORE, OUTPUT_HEATMAP]  # the backend computes both for every request

    def call(i: int) -> float:
        t0 = time.perf_counter()
        session.run(outputs, {INPUT_PATCHES: patches[i % len(patches)]})
        return (time.perf_counter() - t0) * 1e3

    return timed("bare ORT", call, n, warmup, concurrency)


def run_triton(url: str, version: int, patches: list[np.ndarray], n: int, warmup: int,
               concurrency: int) -> PathFigures:
    from preprocessor.inspector_client import TritonInspector
    from vialguard.inference import InferenceUnavailable

    inspector = TritonInspector(url)
    other_versions: set[int] = set()

    def call(i: int) -> float | None:
        t0 = time.perf_counter()
        try:
            result = inspector.infer(patches[i % len(patches)], timeout_s=CALL_TIMEOUT_S)
        except InferenceUnavailable as exc:
            print(f"  triton call {i} failed: {exc}", flush=True)
            return None
        if result.model_version != version:
            other_versions.add(result.model_version)
        return (time.perf_counter() - t0) * 1e3

    try:
        figures = timed("Triton", call, n, warmup, concurrency)
    finally:
        inspector.close()
    if other_versions:
        print(f"  WARNING: Triton answered with version(s) {sorted(other_versions)}, not {version}", flush=True)
    return figures


def run_stack(target: str, recipe: Recipe, version: int, frames: list[tuple[str, np.ndarray]], n: int,
              warmup: int, concurrency: int, stages: dict[str, list[float]], encode_ms: list[float]) -> PathFigures:
    from vialguard_stack.camera import FrameEncoding, FrameSelection, Shot, SimulatedCamera

    token = secrets.token_hex(3)  # fresh acquisition ids: a repeated id would be a replay, not work
    shots = [Shot(f"bench-{token}-{i:05d}", frames[i % len(frames)][0], i, frames[i % len(frames)][1])
             for i in range(n + warmup)]
    other_versions: set[int] = set()
    camera = SimulatedCamera(target, recipe, FrameEncoding.RAW, FrameSelection.INSPECTED,
                             deadline_ms=CALL_TIMEOUT_S * 1e3, fetch_late_verdicts=False)

    def call(i: int) -> float | None:
        result = camera.push(shots[i])
        if result.verdict is None or result.status != "OK":
            print(f"  stack call {i} failed: {result.status} {result.message}", flush=True)
            return None
        if result.verdict.model_version != version:
            other_versions.add(int(result.verdict.model_version))
        if i < n:
            t = result.verdict.timings
            measured = {name: getattr(t, name) for name in STAGES}
            measured["preprocessor other"] = max(0.0, t.total_ms - sum(measured.values()))
            measured["gRPC + camera client"] = max(0.0, result.latency_ms - t.total_ms)
            for name, value in measured.items():
                stages.setdefault(name, []).append(value)
            encode_ms.append(result.encode_ms)
        return result.latency_ms

    with camera:
        figures = timed("stack (gRPC Inspect)", call, n, warmup, concurrency)
    if other_versions:
        print(f"  WARNING: verdicts came from version(s) {sorted(other_versions)}, not {version}", flush=True)
    return figures


def heatmap_cost(url: str, patches: np.ndarray, calls: int, model_ms: float) -> list[str]:
    """Triton asked for the score only vs score + heatmap: what shipping the heatmap back costs.

    The request tensor is serialised once for both arms, so the two medians leave
    out the input's serialisation (the Triton row includes it); their difference
    is the heatmap's gRPC trip and client-side decoding.
    """
    import tritonclient.grpc as grpcclient

    client = grpcclient.InferenceServerClient(url)
    tensor = grpcclient.InferInput(INPUT_PATCHES, list(patches.shape), "FP32")
    tensor.set_data_from_numpy(patches)
    asks = {wanted: [grpcclient.InferRequestedOutput(name) for name in wanted]
            for wanted in ((OUTPUT_SCORE,), (OUTPUT_SCORE, OUTPUT_HEATMAP))}
    samples: dict[tuple[str, ...], list[float]] = {wanted: [] for wanted in asks}

    def once(outputs: list) -> float:  # type: ignore[type-arg]
        t0 = time.perf_counter()
        client.infer(MODEL_NAME, [tensor], outputs=outputs, client_timeout=CALL_TIMEOUT_S)
        return (time.perf_counter() - t0) * 1e3

    try:
        for k in range(calls + 3):  # interleaved, so a shared machine's load drift hits both alike
            for wanted, outputs in asks.items():
                latency = once(outputs)
                if k >= 3:
                    samples[wanted].append(latency)
    finally:
        client.close()
    medians = {wanted: percentile_ms(values, 50) for wanted, values in samples.items()}
    score_only, both = medians[(OUTPUT_SCORE,)], medians[(OUTPUT_SCORE, OUTPUT_HEATMAP)]
    side = patches.shape[1]
    mb = patches.nbytes / 1e6
    paper_mb = patches.shape[0] * 256 * 256 * 4 / 1e6
    return [
        f"heatmap transfer at {side} px: input {mb:.2f} MB and heatmap {mb:.2f} MB per acquisition "
        f"(at 256 px: {paper_mb:.1f} MB each)",
        f"  Triton p50 over {calls} calls: score only {score_only:.2f} ms, score + heatmap {both:.2f} ms: "
        f"the heatmap's trip back costs {both - score_only:.2f} ms ({100 * (both - score_only) / both:.1f} % "
        "of the call; the backend computes it either way)",
        f"  that is x{(both - score_only) / model_ms:.2f} the bare model's p50 ({model_ms:.2f} ms)",
    ]


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    from vialguard_stack.local_stack import DEFAULT_REPOSITORY

    p = argparse.ArgumentParser(prog="python -m benchmarks.stack", description=__doc__.split("\n\n")[0])
    p.add_argument("--repository", type=Path, default=DEFAULT_REPOSITORY,
                   help="model repository (default: %(default)s)")
    p.add_argument("--version", type=int, default=None, help="model version (default: the newest published)")
    p.add_argument("--acquisitions", type=int, default=100, help="timed acquisitions per path (default: %(default)s)")
    p.add_argument("--concurrency", type=int, default=1, help="calls in flight at once (default: %(default)s)")
    p.add_argument("--warmup", type=int, default=5, help="untimed calls per path first (default: %(default)s)")
    p.add_argument("--distinct", type=int, default=4,
                   help="acquisitions rendered once and reused in turn (default: %(default)s)")
    p.add_argument("--recipe", default=DEFAULT_RECIPE_ID)
    p.add_argument("--no-heatmap-cost", action="store_true", help="skip the score-only vs score+heatmap check")
    p.add_argument("--run-dir", type=Path, default=None, help="keep the stack's logs here (default: a temporary dir)")
    a = p.parse_args(argv)
    if a.acquisitions < 1 or a.concurrency < 1 or a.warmup < 0 or a.distinct < 1:
        p.error("--acquisitions, --concurrency and --distinct must be >= 1, --warmup >= 0")
    return a


def main(argv: list[str] | None = None) -> int:
    from vialguard_stack.local_stack import StackNotReady, StackSettings, local_stack, preflight

    a = parse_args(argv)
    recipe = load_recipe(a.recipe)
    with tempfile.TemporaryDirectory(prefix="vialguard-stack-bench-") as scratch:
        settings = StackSettings(run_dir=a.run_dir or Path(scratch) / "run", repository=a.repository,
                                 recipe=a.recipe, version=a.version)
        try:
            preflight(settings)  # refuse before rendering; local_stack checks again when it starts
        except StackNotReady as exc:
            print(f"benchmarks.stack: {exc}", file=sys.stderr)
            return 2
        print(f"rendering {a.distinct} acquisitions (not timed) ...", flush=True)
        frames = render_frames(recipe, a.distinct)
        threads = backend_threads(a.repository)
        print("starting the local stack ...", flush=True)
        with local_stack(settings, log=lambda line: print(f"  {line}", flush=True)) as stack:
            import onnxruntime as ort

            onnx_path = a.repository / MODEL_NAME / str(stack.model_version) / ONNX_FILENAME
            side = int(ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
                       .get_inputs()[0].shape[1])
            patches = [cut_acquisition(select_inspected(f, recipe), recipe, side) for _, f in frames]
            print(f"model {MODEL_NAME} v{stack.model_version} ({onnx_path}), {side}x{side} patches, "
                  f"{patches[0].shape[0]} per acquisition; ORT intra_op_num_threads={threads} (0 = ORT default), "
                  f"onnxruntime {ort.__version__} here; {os.cpu_count()} CPUs, load average "
                  f"{os.getloadavg()[0]:.1f} at start; {a.acquisitions} acquisitions per path, concurrency "
                  f"{a.concurrency}, warm-up {a.warmup}", flush=True)
            n, w, c = a.acquisitions, a.warmup, a.concurrency
            bare = run_bare(onnx_path, threads, patches, n, w, c)
            print(f"  bare ORT done: {bare.per_second:.1f} acq/s", flush=True)
            triton = run_triton(stack.triton_grpc_url, stack.model_version, patches, n, w, c)
            print(f"  Triton done: {triton.per_second:.1f} acq/s", flush=True)
            stages: dict[str, list[float]] = {}
            encode_ms: list[float] = []
            full = run_stack(stack.preprocessor_target, recipe, stack.model_version, frames, n, w, c, stages,
                             encode_ms)
            print(f"  stack done: {full.per_second:.1f} acq/s", flush=True)
            extra = ([] if a.no_heatmap_cost
                     else heatmap_cost(stack.triton_grpc_url, patches[0], min(n, 30), bare.p50_ms))
    print()
    for line in table_lines([bare, triton, full]) + [""] + ratio_lines(bare, triton, full):
        print(line)
    print("\nwhere the stack's time goes (per acquisition, from each Verdict's stage timings):")
    for line in stage_lines(stages):
        print(f"  {line}")
    print(f"  (decode_ms counts from the call's arrival: identity check and replay claim included; the camera "
          f"built each RAW request in p50 {percentile_ms(encode_ms, 50):.2f} ms before its clock started)")
    for line in extra:
        print(line)
    return 0


if __name__ == "__main__":
    sys.exit(main())
