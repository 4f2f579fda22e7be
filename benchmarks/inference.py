"""Inspector time per 60-patch acquisition under ONNX Runtime, against the 500 ms slot.

The line sends one acquisition (3 frames x 5 vials x 4 regions = 60 patches)
every 500 ms; the inspector graph (generator + local score fused over the frames +
phi + heatmap, what a version serves) must answer well inside that. This converts the profile's inspector exactly as the
exporter does and times ONNX Runtime on one 60-patch batch at a time: warmup
first, then median, p99 and patches/s. Weights do not change the time, so a
freshly initialised generator is used unless ``--generator`` names a trained one.

    python -m benchmarks.inference                    # cpu: 30 acquisitions; paper: 1
    python -m benchmarks.inference --profiles cpu --acquisitions 100

Prints figures only; never fails on time.
"""
from __future__ import annotations

import argparse
import os
import time
from dataclasses import dataclass
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np

from benchmarks.machine import this_machine

SLOT_MS = 500.0
PATCHES_PER_ACQUISITION = 60


@dataclass(frozen=True)
class InferenceTiming:
    profile: str
    patch_size: int
    onnx_mb: float
    convert_s: float
    threads: int
    samples_ms: np.ndarray
    chunk: int = PATCHES_PER_ACQUISITION
    runtime: str = "ONNX Runtime CPU"

    @property
    def median_ms(self) -> float:
        return float(np.median(self.samples_ms))

    @property
    def p99_ms(self) -> float:
        return float(np.percentile(self.samples_ms, 99))

    @property
    def patches_per_s(self) -> float:
        return PATCHES_PER_ACQUISITION / (self.median_ms / 1e3)

    def lines(self) -> list[str]:
        return [
            f"profile {self.profile}: {self.patch_size}x{self.patch_size} patches, "
            + (f"ONNX {self.onnx_mb:.1f} MB (converted in {self.convert_s:.1f} s), " if self.convert_s else "")
            + f"{self.runtime}, {self.threads} threads"
            + ("" if self.chunk >= PATCHES_PER_ACQUISITION else f", sent {self.chunk} patches per call"),
            f"  per 60-patch acquisition over {self.samples_ms.size} runs: median {self.median_ms:.1f} ms, "
            f"p99 {self.p99_ms:.1f} ms, min {self.samples_ms.min():.1f} ms",
            f"  {self.median_ms / PATCHES_PER_ACQUISITION:.3f} ms per patch, {self.patches_per_s:.1f} patches/s",
            f"  slot: median uses {100 * self.median_ms / SLOT_MS:.1f} % of {SLOT_MS:.0f} ms "
            f"(x{SLOT_MS / self.median_ms:.1f} headroom), p99 {100 * self.p99_ms / SLOT_MS:.1f} %",
        ]


def _timing_local_model(patch_size: int):  # noqa: ANN202
    """The fused local-score model a `cpu` version serves, of the recipe's layout: the map the
    cpu scale scores (the strip reference, its settings scaled to a resampled side) and the
    calibration's smoothing. Its statistics do not change the time."""
    from trainer.calibrate_local import SMOOTH_SIGMA
    from trainer.run_scale import get_scale
    from vialguard.local_score import LocalScoreModel, PatchLayout
    from vialguard.recipe import load_recipe

    recipe = load_recipe()
    layout = PatchLayout.from_recipe(recipe)
    side = patch_size - 10
    anomaly_map = get_scale("cpu").anomaly_map
    from trainer.calibrate_local import SMOOTH_AFTER_FUSION, row_tail_of

    rows = np.ones((layout.regions, side), np.float32) if row_tail_of(anomaly_map) is not None else None
    return LocalScoreModel(layout, True, np.zeros((layout.regions, side, side), np.float32),
                           np.ones((layout.regions, side, side), np.float32), SMOOTH_SIGMA, anomaly_map,
                           anomaly_map in SMOOTH_AFTER_FUSION, rows)


def time_profile(profile_name: str, acquisitions: int, warmup: int, threads: int,
                 generator_path: Path | None = None, chunk: int = PATCHES_PER_ACQUISITION,
                 patch_size: int | None = None) -> InferenceTiming:
    """Median etc. over ``acquisitions`` timed runs of 60 patches, sent ``chunk`` at a time.

    A chunk below 60 keeps the paper profile's activations (60 x 128 x 256 x 256
    floats is 2 GB per tensor) within a small machine's memory; the acquisition
    time is then the sum of its chunks, so it is an upper bound of one batch.
    """
    import keras
    import onnxruntime as ort

    from trainer.config import get_profile
    from trainer.export import convert_inspector
    from trainer.inspector import build_inspector
    from trainer.networks.generator import build_generator
    from vialguard.inspector_io import INPUT_PATCHES, OUTPUTS

    from dataclasses import replace

    profile = get_profile(profile_name)
    if patch_size:
        profile = replace(profile, patch_size=patch_size)
    keras.utils.set_random_seed(0)
    generator = keras.models.load_model(generator_path, compile=False) if generator_path else build_generator(profile)
    local = _timing_local_model(profile.patch_size) if chunk == PATCHES_PER_ACQUISITION else None
    started = time.perf_counter()
    onnx_bytes = convert_inspector(build_inspector(generator, local), profile.patch_size)
    convert_s = time.perf_counter() - started
    print(f"  {profile.name}: inspector converted to ONNX ({len(onnx_bytes) / 1e6:.1f} MB) in {convert_s:.1f} s",
          flush=True)
    del generator
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    session = ort.InferenceSession(onnx_bytes, options, providers=["CPUExecutionProvider"])
    rng = np.random.default_rng(0)
    patches = rng.uniform(0, 1, (PATCHES_PER_ACQUISITION, profile.patch_size, profile.patch_size, 1)).astype(np.float32)
    outputs = list(OUTPUTS)  # the line asks for the score, phi and the heatmaps
    chunks = [patches[i:i + chunk] for i in range(0, PATCHES_PER_ACQUISITION, chunk)]

    def acquisition() -> None:
        for part in chunks:
            session.run(outputs, {INPUT_PATCHES: part})

    for _ in range(warmup):
        acquisition()
    samples = []
    for _ in range(acquisitions):
        t0 = time.perf_counter()
        acquisition()
        samples.append((time.perf_counter() - t0) * 1e3)
    return InferenceTiming(profile.name, profile.patch_size, len(onnx_bytes) / 1e6, convert_s, threads,
                           np.array(samples), chunk)


def time_profile_tensorflow(profile_name: str, acquisitions: int, chunk: int) -> InferenceTiming:
    """The same inspector graph timed in TensorFlow, for a profile too big to convert here.

    Converting the paper profile (85 M parameters) with tf2onnx needs more memory
    than a 23 GB machine has (freezing the encoder alone peaks near 4 GB, the whole
    inspector was killed past 23 GB); its timing on such a machine comes from the
    TensorFlow graph that is converted, which runs the same operations.
    """
    import keras
    import tensorflow as tf

    from trainer.config import get_profile
    from trainer.inspector import build_inspector
    from trainer.networks.generator import build_generator

    profile = get_profile(profile_name)
    keras.utils.set_random_seed(0)
    inspector = build_inspector(build_generator(profile))
    rng = np.random.default_rng(0)
    patches = rng.uniform(0, 1, (PATCHES_PER_ACQUISITION, profile.patch_size, profile.patch_size, 1)).astype(np.float32)
    chunks = [tf.constant(patches[i:i + chunk]) for i in range(0, PATCHES_PER_ACQUISITION, chunk)]
    inspector(chunks[0])  # trace
    samples = []
    for _ in range(acquisitions):
        t0 = time.perf_counter()
        for part in chunks:
            out = inspector(part)
            out["score"].numpy()
        samples.append((time.perf_counter() - t0) * 1e3)
    return InferenceTiming(profile.name, profile.patch_size, float("nan"), 0.0, os.cpu_count() or 1,
                           np.array(samples), chunk, runtime="TensorFlow CPU (not converted)")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--profiles", default="cpu,paper", help="comma-separated model profiles (default cpu,paper)")
    parser.add_argument("--acquisitions", type=int, default=30, help="timed acquisitions for the cpu profile")
    parser.add_argument("--paper-acquisitions", type=int, default=1, help="timed acquisitions for the paper profile")
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1, help="ONNX Runtime intra-op threads")
    parser.add_argument("--paper-chunk", type=int, default=4,
                        help="patches per call for the paper profile (memory); cpu sends all 60 at once")
    parser.add_argument("--paper-runtime", choices=("tensorflow", "onnxruntime"), default="tensorflow",
                        help="onnxruntime needs > 23 GB of RAM to convert the paper profile")
    parser.add_argument("--generator", type=Path, default=None, help="trained generator .keras (optional)")
    parser.add_argument("--cpu-patch-sizes", default="256",
                        help="patch sides to time the cpu profile at, e.g. 64,128,256 (default: its native 256)")
    args = parser.parse_args(argv)
    print(f"inspector inference benchmark; slot {SLOT_MS:.0f} ms per acquisition; {this_machine().line()}",
          flush=True)
    for name in [p.strip() for p in args.profiles.split(",") if p.strip()]:
        paper = name == "paper"
        if paper and args.paper_runtime == "tensorflow":
            print("\n".join(time_profile_tensorflow(name, args.paper_acquisitions, args.paper_chunk).lines()),
                  flush=True)
            continue
        sizes = [None] if paper else [int(s) for s in args.cpu_patch_sizes.split(",") if s.strip()]
        for size in sizes:
            timing = time_profile(name, args.paper_acquisitions if paper else args.acquisitions,
                                  1 if paper else args.warmup, args.threads,
                                  None if paper or (size and size != 256) else args.generator,
                                  args.paper_chunk if paper else PATCHES_PER_ACQUISITION, size)
            print("\n".join(timing.lines()), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
