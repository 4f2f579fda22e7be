"""How big a whole training run is: products, runs, kits, epochs. Defaults in one place.

``cpu`` reproduces the committed cpu version on a 2-core machine in about
45 minutes of wall time (measured for version 4, one ``trainer.cli all`` run on
2026-12-01: simulation 3.5 min, ingestion 34 s, training 16 x 250 steps of 16
patches at 256 px 34 min, calibration 4 min, evaluation 2.7 min, export 8 s; version 5
re-calibrated that generator with the strip reference map, which adds about a second
per acquisition to calibration and evaluation on a loaded machine).
``paper`` is the paper's setup: 782 good strips x 10
acquisitions for training (2,815,200 patches with 16 frames + 2 rank images),
and a Knapp-style test kit of 120 good and 141 defective products x 10 runs.
Every field can be overridden from the command line.

The three sets are drawn with different seeds (seed, seed + 1, seed + 2), so the
test kit is used neither for training nor for calibration, and calibration and
test kits never share a product.
"""
from __future__ import annotations

from dataclasses import dataclass, fields, replace
from typing import Any


@dataclass(frozen=True)
class RunScale:
    name: str
    train_products: int  # good strips for training
    train_runs: int  # acquisitions per training strip
    calibration_good: int
    calibration_defective: int
    test_good: int
    test_defective: int
    kit_runs: int  # acquisitions per kit product (the k-of-n policy needs n = 10)
    epochs: int
    steps_per_epoch: int | None  # None: one pass over the training patches
    batch_size: int
    validation_steps: int | None = None  # cap on validation batches per epoch; None: a whole pass
    shard_size: int = 2048
    val_fraction: float = 0.1
    shuffle_buffer: int = 4096
    workers: int = 2  # processes simulating, threads ingesting
    profile: str = "cpu"  # the model profile this scale is meant for
    # None: the paper's 1.5e-4, tuned for ~790k steps. A few thousand CPU steps at that
    # rate never leave the collapsed "mean strip" reconstruction (measured: after 1,600
    # steps every input gave the same output, AUROC 0.5), so the cpu scale trains faster.
    learning_rate: float | None = None
    # Training settings (trainer.config.TrainConfig, as name=value) this scale needs;
    # an explicit --set on the command line still wins.
    train_settings: tuple[str, ...] = ()
    # Segmentation head (GRD-Net's second stage, trainer.segmenter_train) trained on the
    # frozen generator after the GAN: epochs x steps of batch_size; 0 epochs: no head,
    # the served score reads the 1 - SSIM map.
    segmenter_epochs: int = 0
    segmenter_steps: int = 250
    # The map the local score reads (vialguard.local_score.MAP_KINDS): "strip" compares each
    # vial with the other vials of its strip (vialguard.strip_reference; native-size regions
    # only), "ssim" is the generator's 1 - SSIM residual.
    anomaly_map: str = "ssim"

    def with_overrides(self, **values: Any) -> "RunScale":
        """A copy with every non-None value replaced (command-line flags left unset stay default)."""
        known = {f.name for f in fields(self)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(f"unknown run-scale settings {unknown}; known: {sorted(known)}")
        return replace(self, **{k: v for k, v in values.items() if v is not None})


SCALES: dict[str, RunScale] = {
    # 48 good products x 2 runs for training (96 acquisitions, 34,560 patches with the
    # rank images), 20 + 20 products x 10 runs to calibrate and 20 + 20 x 10 held out.
    # Rotation is bounded by the line's real pose spread (+-0.7 deg, simulator), not the
    # paper's pi/8: larger rotations teach the auto-encoder poses the line never shows
    # and cost the narrow cpu network its detail. The cosine schedule spans the whole
    # run (restart_samples = epochs x steps x batch), so training ends at a low rate.
    # w_a = 200 (paper 2): at 256 px with sensor noise the 1 - SSIM term pins the
    # generator to a flat grey output (measured: MSE 0.06, worse than the mean image,
    # after 300 steps of the paper's contextual loss; 0.012 with w_a = 200), because
    # SSIM's structure term in flat noisy areas prefers no structure at all, and the
    # paper's Huber (delta 1 on [0, 1] data, i.e. MSE / 2) is then ~100x too weak to pull
    # the reconstruction towards the product.
    "cpu": RunScale(
        name="cpu", train_products=48, train_runs=2, calibration_good=20, calibration_defective=20,
        test_good=20, test_defective=20, kit_runs=10, epochs=16, steps_per_epoch=250, batch_size=16,
        validation_steps=20, shuffle_buffer=2048, workers=2, learning_rate=1e-3,
        train_settings=("max_rotation=0.03", "restart_samples=64000", "w_a=200.0"), anomaly_map="strip",
    ),
    "paper": RunScale(
        name="paper", train_products=782, train_runs=10, calibration_good=60, calibration_defective=70,
        test_good=120, test_defective=141, kit_runs=10, epochs=10, steps_per_epoch=None, batch_size=32,
        shuffle_buffer=16384, workers=8, profile="paper", anomaly_map="strip",
    ),
    # For tests: seconds.
    "smoke": RunScale(
        name="smoke", train_products=2, train_runs=1, calibration_good=1, calibration_defective=1,
        test_good=1, test_defective=1, kit_runs=2, epochs=1, steps_per_epoch=2, batch_size=4,
        validation_steps=2, shard_size=256, shuffle_buffer=64, workers=1, profile="tiny",
    ),
}

# Fields the command line can override one by one (--train-products, --steps, ...).
SCALE_FLAGS = ("train_products", "train_runs", "calibration_good", "calibration_defective", "test_good",
               "test_defective", "kit_runs", "epochs", "steps_per_epoch", "batch_size", "shard_size", "workers",
               "segmenter_epochs", "segmenter_steps", "anomaly_map")


def get_scale(name: str) -> RunScale:
    try:
        return SCALES[name]
    except KeyError:
        raise ValueError(f"unknown scale '{name}'; known: {sorted(SCALES)}") from None
