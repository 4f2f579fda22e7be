"""What each layer of the serving stack costs: bare ONNX Runtime vs Triton vs the whole stack.

In one run, on the same model version, machine and pre-rendered acquisitions,
at each concurrency asked for (calls in flight at once):

1. bare ONNX Runtime: the version's model.onnx, with the thread settings of the
   Triton CPU config (the Python backend's model.py reads them the same way),
   on the 60 patches cut by vialguard.patching, asking for score and phi (what
   the stack asks for);
2. Triton `inspector` through tritonclient (preprocessor.inspector_client.TritonInspector),
   patches over gRPC, then through system shared memory;
3. the full stack (local redis-server, tritonserver, aggregator, preprocessor)
   through gRPC Inspect from the simulated camera: inspected frames only, RAW.

Reports acquisitions/s and p50/p99 latency per acquisition for each, the ratios to
bare, where the stack's time goes (the stage timings each Verdict carries), and
what moving heatmaps costs. ``--pixel-input`` serves a rewritten copy of the
version that takes the camera's uint8 pixels (trainer.onnx_pixel_input, in a
scratch repository) for a version exported before pixel inputs. Rendering is done
once, before any clock starts; every path warms up first. Prints figures only and
never fails on time: the aims (stack >= 0.9x bare, p99 <= 300 ms) are reported as
met or not.

    python -m benchmarks.stack [--repository model_repository] [--version N] [--pixel-input]
                               [--acquisitions 100] [--concurrency 1,2]
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

from benchmarks.machine import this_machine
from benchmarks.stack_figures import PathFigures, percentile_ms, ratio_lines, stage_lines, table_lines
from vialguard.inspector_io import INPUT_PATCHES, MODEL_NAME, ONNX_FILENAME, OUTPUT_PHI, OUTPUT_SCORE
from vialguard.patching import cut_acquisition, cut_acquisition_pixels, is_native, select_inspected, to_unit_float
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


def backend_session(repository: Path) -> tuple[int, str | None]:
    """(intra_op_num_threads, allow_spinning) of the Triton CPU config, as the Python backend reads them
    (threads 0: ORT's default; spinning None: ORT's default, which spins)."""
    from vialguard_stack.local_stack import TRITON_CONFIG
    from vialguard_stack.rollout import config_from_file

    params = config_from_file(repository, TRITON_CONFIG).get("parameters", {})
    spinning = params.get("allow_spinning", {}).get("string_value")
    return int(params.get("intra_op_num_threads", {}).get("string_value", "0")), spinning


def run_bare(onnx_path: Path, threads: int, patches: list[np.ndarray], n: int, warmup: int,
             concurrency: int, spinning: str | None = None, name: str = "bare ORT") -> PathFigures:
    """The model alone in this process; ``spinning``: ORT's allow_spinning as the served config sets it."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    if spinning is not None:
        options.add_session_config_entry("session.intra_op.allow_spinning", spinning)
    session = ort.InferenceSession(str(onnx_path), options, providers=["CPUExecutionProvider"])
    outputs = [OUTPUT_SCORE, OUTPUT_PHI]  # what the stack asks for (ORT runs the whole graph either way)

    def call(i: int) -> float:
        t0 = time.perf_counter()
        session.run(outputs, {INPUT_PATCHES: patches[i % len(patches)]})
        return (time.perf_counter() - t0) * 1e3

    return timed(name, call, n, warmup, concurrency)


def run_triton(url: str, version: int, patches: list[np.ndarray], n: int, warmup: int,
               concurrency: int, shm_key: str | None = None) -> PathFigures:
    """Triton through the preprocessor's own client; ``shm_key``: patches through shared memory."""
    from preprocessor.inspector_client import TritonInspector
    from preprocessor.shared_inputs import SharedInputs, shm_headers
    from vialguard.inference import InferenceUnavailable

    shared = (SharedInputs(concurrency, max(p.nbytes for p in patches) * 4, shm_headers(shm_key))
              if shm_key is not None else None)
    inspector = TritonInspector(url, shared=shared)
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
        figures = timed("Triton shm" if shared else "Triton gRPC", call, n, warmup, concurrency)
        if shared is not None:
            import tritonclient.grpc as grpcclient

            admin = grpcclient.InferenceServerClient(url)
            shared.close(admin)
            admin.close()
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


def heatmap_cost(url: str, pixels: np.ndarray, version: int, calls: int) -> list[str]:
    """What a heatmap costs: score + phi only, with all 60 heatmaps, and the heatmaps of 3 patches apart."""
    from preprocessor.inspector_client import TritonInspector

    inspector = TritonInspector(url)
    apart = inspector.heatmaps_apart()
    arms: dict[str, Callable[[], object]] = {
        "score + phi": lambda: inspector.infer(pixels, CALL_TIMEOUT_S),
        "score + phi + 60 heatmaps": lambda: inspector.infer(pixels, CALL_TIMEOUT_S, heatmaps=True),
    }
    if apart:
        arms["3 heatmaps apart"] = lambda: inspector.heatmaps(pixels[:3], version, CALL_TIMEOUT_S)
    samples: dict[str, list[float]] = {name: [] for name in arms}
    try:
        for k in range(calls + 3):  # interleaved, so a shared machine's load drift hits all alike
            for name, arm in arms.items():
                t0 = time.perf_counter()
                arm()
                if k >= 3:
                    samples[name].append((time.perf_counter() - t0) * 1e3)
    finally:
        inspector.close()
    heat_mb = pixels.shape[0] * pixels.shape[1] * pixels.shape[2] * 4 / 1e6
    lines = [f"heatmaps (Triton p50 over {calls} calls; {pixels.nbytes / 1e6:.2f} MB of patches in, "
             f"{heat_mb:.1f} MB of float32 heatmaps back when all 60 are asked for):"]
    lines += [f"  {name:<28} {percentile_ms(values, 50):8.2f} ms" for name, values in samples.items()]
    if not apart:
        lines.append("  (this version has no heatmap.onnx: the stack asks for all 60 with the scores)")
    return lines


def pixel_copy(repository: Path, version: int | None, scratch: Path) -> tuple[Path, int]:
    """A scratch repository holding `version` (default: the newest) and its uint8-pixel rewrite.

    A version that already takes pixels is served as it is, from `repository`.
    """
    from trainer.onnx_pixel_input import pixel_copy_repository
    from vialguard.model_repository import latest_version, version_input_datatype

    version = version if version is not None else latest_version(repository)
    if version is None:
        raise SystemExit(f"no published version in {repository}")
    if version_input_datatype(repository, version) != "FP32":
        return repository, version
    return pixel_copy_repository(repository, version, scratch)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    from vialguard_stack.local_stack import DEFAULT_REPOSITORY

    p = argparse.ArgumentParser(prog="python -m benchmarks.stack", description=__doc__.split("\n\n")[0])
    p.add_argument("--repository", type=Path, default=DEFAULT_REPOSITORY,
                   help="model repository (default: %(default)s)")
    p.add_argument("--version", type=int, default=None, help="model version (default: the newest published)")
    p.add_argument("--acquisitions", type=int, default=100, help="timed acquisitions per path (default: %(default)s)")
    p.add_argument("--concurrency", default="1,2",
                   help="calls in flight at once, comma-separated for several runs (default: %(default)s)")
    p.add_argument("--pixel-input", action="store_true",
                   help="serve a rewritten copy of the version that takes uint8 pixels (scratch repository)")
    p.add_argument("--no-shared-memory", action="store_true", help="the stack's preprocessor sends patches over gRPC")
    p.add_argument("--warmup", type=int, default=5, help="untimed calls per path first (default: %(default)s)")
    p.add_argument("--distinct", type=int, default=4,
                   help="acquisitions rendered once and reused in turn (default: %(default)s)")
    p.add_argument("--recipe", default=DEFAULT_RECIPE_ID)
    p.add_argument("--no-heatmap-cost", action="store_true", help="skip the heatmap cost check")
    p.add_argument("--run-dir", type=Path, default=None, help="keep the stack's logs here (default: a temporary dir)")
    a = p.parse_args(argv)
    try:
        a.concurrency = [int(c) for c in str(a.concurrency).split(",")]
    except ValueError:
        p.error(f"--concurrency takes integers like 1,2, got {a.concurrency!r}")
    if a.acquisitions < 1 or min(a.concurrency) < 1 or a.warmup < 0 or a.distinct < 1:
        p.error("--acquisitions, --concurrency and --distinct must be >= 1, --warmup >= 0")
    return a


def main(argv: list[str] | None = None) -> int:
    from vialguard_stack.local_stack import StackNotReady, StackSettings, local_stack, preflight

    a = parse_args(argv)
    recipe = load_recipe(a.recipe)
    with tempfile.TemporaryDirectory(prefix="vialguard-stack-bench-") as scratch:
        repository, version = a.repository, a.version
        if a.pixel_input:
            repository, version = pixel_copy(a.repository, a.version, Path(scratch))
            if repository != a.repository:
                print(f"serving version {version}: a copy of version {version - 1} of {a.repository} that takes "
                      f"uint8 pixels (scratch repository {repository})", flush=True)
        settings = StackSettings(run_dir=a.run_dir or Path(scratch) / "run", repository=repository,
                                 recipe=a.recipe, version=version, shared_memory=not a.no_shared_memory)
        try:
            preflight(settings)  # refuse before rendering; local_stack checks again when it starts
        except StackNotReady as exc:
            print(f"benchmarks.stack: {exc}", file=sys.stderr)
            return 2
        print(this_machine().line(), flush=True)
        print(f"rendering {a.distinct} acquisitions (not timed) ...", flush=True)
        frames = render_frames(recipe, a.distinct)
        threads, spinning = backend_session(repository)
        print("starting the local stack ...", flush=True)
        runs: list[tuple[int, list[PathFigures], PathFigures | None, dict[str, list[float]], list[float]]] = []
        with local_stack(settings, log=lambda line: print(f"  {line}", flush=True)) as stack:
            import onnxruntime as ort

            onnx_path = repository / MODEL_NAME / str(stack.model_version) / ONNX_FILENAME
            model_input = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"]).get_inputs()[0]
            side = int(model_input.shape[1])
            native = is_native(recipe, side)
            pixels = [cut_acquisition_pixels(select_inspected(f, recipe), recipe) if native
                      else cut_acquisition(select_inspected(f, recipe), recipe, side) for _, f in frames]
            fed = pixels if model_input.type != "tensor(float)" else [to_unit_float(p) for p in pixels]
            print(f"model {MODEL_NAME} v{stack.model_version} ({onnx_path}), {side}x{side} patches as "
                  f"{model_input.type}, {pixels[0].shape[0]} per acquisition ({pixels[0].nbytes / 1e6:.1f} MB sent "
                  f"by the preprocessor); ORT intra_op_num_threads={threads} (0 = ORT default), allow_spinning "
                  f"{spinning if spinning is not None else 'default'} as served, onnxruntime "
                  f"{ort.__version__} here; {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f} at start; "
                  f"{a.acquisitions} acquisitions per path, warm-up {a.warmup}; stack preprocessor: "
                  f"{'gRPC' if a.no_shared_memory else 'shared memory'} to Triton", flush=True)
            n, w = a.acquisitions, a.warmup
            for c in a.concurrency:
                bare = run_bare(onnx_path, threads, fed, n, w, c)
                print(f"  c={c} bare ORT done: {bare.per_second:.1f} acq/s", flush=True)
                # The same session as Triton's (its idle threads sleep): what the stack adds beyond the
                # model as served. Only when the config changes a default, else it is the row above.
                served = (run_bare(onnx_path, threads, fed, n, w, c, spinning, "bare ORT as served")
                          if spinning is not None else None)
                if served is not None:
                    print(f"  c={c} bare ORT as served done: {served.per_second:.1f} acq/s", flush=True)
                grpc_path = run_triton(stack.triton_grpc_url, stack.model_version, pixels, n, w, c)
                print(f"  c={c} Triton gRPC done: {grpc_path.per_second:.1f} acq/s", flush=True)
                shm_path = run_triton(stack.triton_grpc_url, stack.model_version, pixels, n, w, c,
                                      shm_key=stack.triton_shm_key)
                print(f"  c={c} Triton shm done: {shm_path.per_second:.1f} acq/s", flush=True)
                stages: dict[str, list[float]] = {}
                encode_ms: list[float] = []
                full = run_stack(stack.preprocessor_target, recipe, stack.model_version, frames, n, w, c, stages,
                                 encode_ms)
                print(f"  c={c} stack done: {full.per_second:.1f} acq/s", flush=True)
                runs.append((c, [bare, grpc_path, shm_path, full], served, stages, encode_ms))
            extra = ([] if a.no_heatmap_cost
                     else heatmap_cost(stack.triton_grpc_url, pixels[0], stack.model_version, min(n, 30)))
    for c, rows, served, stages, encode_ms in runs:
        print(f"\n== concurrency {c} ==")
        for line in table_lines(rows + ([served] if served else [])) + [""] + ratio_lines(rows[0], *rows[1:]):
            print(line)
        if served is not None:
            for line in ratio_lines(served, *rows[1:]):
                print(f"  against the served session: {line}")
        print("where the stack's time goes (per acquisition, from each Verdict's stage timings):")
        for line in stage_lines(stages):
            print(f"  {line}")
        print(f"  (decode_ms counts from the call's arrival: identity check and replay claim included; the camera "
              f"built each RAW request in p50 {percentile_ms(encode_ms, 50):.2f} ms before its clock started)")
    for line in extra:
        print(line)
    return 0


if __name__ == "__main__":
    sys.exit(main())
