"""Training throughput (patches/s) and the input pipeline's share of step time.

Runs the real chain on a small synthetic set: the simulator renders a few good
strips, ingestion cuts them (16 frames + 2 rank images, 360 patches per
acquisition) into TFRecords at the profile's patch size, and the GAN's own
train_step (augment, Perlin perturbation, generator and discriminator updates)
consumes trainer.pipeline.training_dataset. Each step is split into the wait
on ``next(iterator)`` (the input pipeline) and the compute; the pipeline's
share is wait / (wait + compute). A share near 0 means the model, not the
input, bounds training; on a GPU that share is what starves first.

    python -m benchmarks.training --profile cpu --steps 20

Prints figures only; never fails on time.
"""
from __future__ import annotations

import argparse
import os
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
# TF 2.21 CPU with oneDNN on corrupts the heap in the generator's backward pass here
# ("corrupted double-linked list", SIGSEGV); with it off the same step runs.
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")

import numpy as np

from benchmarks.machine import this_machine


@dataclass(frozen=True)
class TrainingTiming:
    profile: str
    batch_size: int
    wait_s: np.ndarray      # per timed step: waiting on the input pipeline
    compute_s: np.ndarray   # per timed step: the train step itself
    patches_in_set: int

    @property
    def total_s(self) -> float:
        return float(self.wait_s.sum() + self.compute_s.sum())

    @property
    def patches_per_s(self) -> float:
        return self.batch_size * self.wait_s.size / self.total_s

    @property
    def input_share(self) -> float:
        return float(self.wait_s.sum()) / self.total_s

    def lines(self) -> list[str]:
        step_ms = (self.wait_s + self.compute_s) * 1e3
        return [
            f"profile {self.profile}: batch {self.batch_size}, {self.wait_s.size} timed steps on a "
            f"{self.patches_in_set}-patch synthetic TFRecord set",
            f"  {self.patches_per_s:.1f} patches/s; step median {np.median(step_ms):.0f} ms "
            f"(p99 {np.percentile(step_ms, 99):.0f} ms)",
            f"  input pipeline share of step time: {100 * self.input_share:.2f} % "
            f"(median wait {np.median(self.wait_s) * 1e3:.2f} ms per batch)",
        ]


def make_patch_set(workdir: Path, patch_size: int, products: int, seed: int = 0) -> Path:
    """Simulate ``products`` good strips x 1 run and ingest them (reused if already there)."""
    from trainer.chain import simulate_set
    from trainer.ingest import IngestOptions, ingest
    from trainer.shard_index import index_path_of, load_index
    from vialguard.recipe import load_recipe

    if index_path_of(workdir / "patches").is_file() and load_index(workdir / "patches").patch_size == patch_size:
        return workdir / "patches"
    recipe = load_recipe()
    data = simulate_set(workdir / "data", recipe, products, 0, 1, seed)
    ingest(data, workdir / "patches", recipe,
           IngestOptions(frames="all+rank", patch_size=patch_size, val_fraction=0.0, seed=seed), overwrite=True)
    return workdir / "patches"


def time_training(profile_name: str, steps: int, warmup: int, batch_size: int, products: int,
                  workdir: Path) -> TrainingTiming:
    import keras
    import tensorflow as tf

    from trainer.config import get_profile, make_train_config
    from trainer.gan import PerturbedGAN
    from trainer.networks.discriminator import build_discriminator
    from trainer.networks.generator import build_generator
    from trainer.pipeline import training_dataset
    from trainer.schedule import make_optimizer
    from trainer.shard_index import load_index

    profile = get_profile(profile_name)
    patches = make_patch_set(workdir, profile.patch_size, products)
    config = make_train_config({"batch_size": batch_size, "precision": "float32"})
    keras.utils.set_random_seed(config.seed)
    gan = PerturbedGAN(build_generator(profile), build_discriminator(profile), config)
    gan.compile(make_optimizer(config), make_optimizer(config))
    step = tf.function(gan.train_step)
    iterator = iter(training_dataset(patches, "train", batch_size, shuffle_buffer=1024, seed=config.seed))
    waits, computes = [], []
    for i in range(warmup + steps):
        t0 = time.perf_counter()
        batch = next(iterator)
        t1 = time.perf_counter()
        logs = step(batch)
        float(logs["g_loss"])  # wait for the step to finish
        t2 = time.perf_counter()
        if i >= warmup:
            waits.append(t1 - t0)
            computes.append(t2 - t1)
    return TrainingTiming(profile.name, batch_size, np.array(waits), np.array(computes),
                          load_index(patches).count(None))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--profile", default="cpu")
    parser.add_argument("--steps", type=int, default=20, help="timed steps")
    parser.add_argument("--warmup", type=int, default=3, help="untimed first steps (tracing, autotune)")
    parser.add_argument("--batch-size", type=int, default=32, help="the paper's is 32")
    parser.add_argument("--products", type=int, default=2, help="simulated good strips (x 360 patches)")
    parser.add_argument("--workdir", type=Path, default=None, help="keep the synthetic set here (default: temp)")
    args = parser.parse_args(argv)
    print(f"training benchmark; {this_machine().line()}", flush=True)
    if args.workdir:
        timing = time_training(args.profile, args.steps, args.warmup, args.batch_size, args.products, args.workdir)
    else:
        with tempfile.TemporaryDirectory(prefix="vialguard-train-bench-") as tmp:
            timing = time_training(args.profile, args.steps, args.warmup, args.batch_size, args.products, Path(tmp))
    print("\n".join(timing.lines()), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
