"""The steps of a training run, each callable alone or chained by ``all``.

simulate -> ingest -> train -> calibrate (calibration kit) -> evaluate (held-out
test kit) -> export (new version in the model repository). Every step reads and
writes files in a work directory (:class:`RunLayout`), so any step can be rerun
alone, and a failed export leaves everything needed to retry it.
"""
from __future__ import annotations

import json
import logging
import multiprocessing
import shutil
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from trainer.ingest import IngestOptions, ingest
from trainer.run_scale import RunScale
from trainer.shard_index import load_index
from vialguard.errors import VialguardError
from vialguard.local_score import MAP_KINDS, MAP_SSIM, MAP_STRIP
from vialguard.recipe import Recipe

log = logging.getLogger(__name__)
SETS = ("train", "calibration", "test")
GENERATOR_FILENAME = "generator.keras"
WITH_SEGMENTER_FILENAME = "generator-segmenter.keras"


class ChainError(VialguardError):
    """A step of the training chain cannot run with what it was given."""


@dataclass(frozen=True)
class RunLayout:
    """Where a run keeps its datasets, patch shards, checkpoints and results."""

    root: Path

    def data(self, name: str) -> Path:
        return self.root / "data" / name

    def patches(self, name: str) -> Path:
        return self.root / "patches" / name

    @property
    def train_dir(self) -> Path:  # checkpoints and TensorBoard logs
        return self.root / "train"

    @property
    def generator(self) -> Path:
        return self.root / GENERATOR_FILENAME

    @property
    def generator_with_segmenter(self) -> Path:  # the generator with its segmentation head attached
        return self.root / WITH_SEGMENTER_FILENAME

    @property
    def calibration_dir(self) -> Path:  # calibration.json of the served score + every score's (calibration_bundle)
        return self.root / "calibration"

    @property
    def evaluation_dir(self) -> Path:
        return self.root / "evaluation"

    @property
    def summary(self) -> Path:
        return self.root / "run.json"


def default_workdir() -> Path:
    return Path("runs") / datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")


def simulate_set(out: Path, recipe: Recipe, good: int, defective: int, runs: int, seed: int) -> Path:
    """One simulated dataset (dataset.json + manifest.jsonl + PNG frames): a good-only
    training set when ``defective`` is 0, else a Knapp-style kit."""
    from vialguard.simulator.kit import make_kit, make_train_set, write_dataset

    if good + defective < 1 or runs < 1:
        raise ChainError(f"a simulated set needs at least one product and one run, got {good}+{defective} x {runs}")
    if _already_simulated(out, recipe, good, defective, runs, seed):
        log.info("%s already holds this simulated set: kept", out)
        return out
    if defective:
        acquisitions = make_kit(good, defective, runs, seed, recipe)
        params = {"kind": "kit", "good": good, "defective": defective, "runs": runs}
    else:
        acquisitions = make_train_set(good, runs, seed, recipe)
        params = {"kind": "train-set", "good": good, "defective": 0, "runs": runs}
    write_dataset(out, acquisitions, recipe, seed, params)
    return out


def _already_simulated(out: Path, recipe: Recipe, good: int, defective: int, runs: int, seed: int) -> bool:
    """True when a rerun of ``all`` in the same work directory finds this very set complete."""
    from vialguard.dataset import read_header

    if not (out / "dataset.json").is_file():
        return False
    header = read_header(out)
    wanted = {"good": good, "defective": defective, "runs": runs}
    same = (header.seed == seed and header.recipe_digest == recipe.digest()
            and all(header.generator.get(k) == v for k, v in wanted.items()))
    if not same:
        raise ChainError(f"{out} holds another dataset (seed {header.seed}, {header.generator}); "
                         "use a new --workdir or delete it")
    if header.counts.get("acquisitions") == (good + defective) * runs:
        return True
    log.warning("%s is an unfinished simulation of this set (a previous run stopped): simulating it again", out)
    shutil.rmtree(out)
    return False


def simulate_all(layout: RunLayout, recipe: Recipe, scale: RunScale, seed: int) -> dict[str, Path]:
    """Training set (good only), calibration kit and held-out test kit, each with its own seed.

    The two kits must differ in seed: the simulator draws a kit's products from
    (seed, product number), so equal seeds would give the same products twice.
    """
    plan = {
        "train": (scale.train_products, 0, scale.train_runs, seed),
        "calibration": (scale.calibration_good, scale.calibration_defective, scale.kit_runs, seed + 1),
        "test": (scale.test_good, scale.test_defective, scale.kit_runs, seed + 2),
    }
    started = time.monotonic()
    if scale.workers > 1:  # the three sets are independent: render them side by side
        # spawn, not fork: a forked child of a process that has started TensorFlow can hang
        context = multiprocessing.get_context("spawn")
        with ProcessPoolExecutor(max_workers=min(scale.workers, len(plan)), mp_context=context) as pool:
            futures = {name: pool.submit(simulate_set, layout.data(name), recipe, *args) for name, args in plan.items()}
            out = {name: f.result() for name, f in futures.items()}
    else:
        out = {name: simulate_set(layout.data(name), recipe, *args) for name, args in plan.items()}
    log.info("simulated %s in %.1f s", ", ".join(f"{n}: {g}+{b} products x {r} runs" for n, (g, b, r, _) in
                                                 plan.items()), time.monotonic() - started)
    return out


def ingest_all(layout: RunLayout, recipe: Recipe, patch_size: int, scale: RunScale, seed: int) -> dict[str, Path]:
    """Training set as 16 frames + 2 rank images of good products; kits as inspected frames."""
    out = {}
    for name in SETS:
        training = name == "train"
        options = IngestOptions(
            frames="all+rank" if training else "inspected", patch_size=patch_size, shard_size=scale.shard_size,
            val_fraction=scale.val_fraction if training else 0.0, seed=seed, workers=scale.workers,
        )
        index = ingest(layout.data(name), layout.patches(name), recipe, options, overwrite=True)
        rate = index.count(None) / max(index.seconds, 1e-9)
        log.info("ingested %s: %d patches in %.1f s (%.0f patches/s)", name, index.count(None), index.seconds, rate)
        out[name] = layout.patches(name)
    return out


def train_generator(patches: Path, profile: Any, config: Any, layout: RunLayout, shuffle_buffer: int,
                    validation_steps: int | None = None, heldout_kit: Path | None = None,
                    recipe: Recipe | None = None) -> Any:
    """Train the GAN on the ingested training set and save the generator.

    ``validation_steps`` caps the validation pass per epoch (on a CPU a full pass
    can cost as much as the training epoch); None keeps the config's setting.
    ``heldout_kit`` (an ingested kit never trained on, with its ``recipe``) adds the
    held-out strip AUROC per epoch to TensorBoard (trainer.monitoring).
    """
    from trainer.pipeline import steps_per_epoch, training_dataset
    from trainer.train import train

    index = load_index(patches)
    if index.patch_size != profile.patch_size:
        raise ChainError(f"patches in {patches} are {index.patch_size} px but profile '{profile.name}' takes "
                         f"{profile.patch_size} px; re-ingest with --profile {profile.name}")
    if config.steps_per_epoch is None:  # an endless stream needs its epoch length: one pass over the patches
        config = replace(config, steps_per_epoch=steps_per_epoch(patches, "train", config.batch_size))
    if config.validation_steps is None and validation_steps is not None:
        config = replace(config, validation_steps=min(validation_steps,
                                                      max(1, index.count("validation") // config.batch_size)))
    train_ds = training_dataset(patches, "train", config.batch_size, shuffle_buffer, config.seed, repeat=True)
    val_ds = None
    if index.count("validation"):
        val_ds = training_dataset(patches, "validation", config.batch_size, shuffle_buffer, config.seed,
                                  repeat=False)
    extra = []
    if heldout_kit is not None and recipe is not None:
        from trainer.monitoring import HeldOutAuroc, heldout_sample
        from vialguard.local_score import PatchLayout

        lay = PatchLayout.from_recipe(recipe)
        sample, defective = heldout_sample(heldout_kit, recipe.inspected_frames, lay)
        extra.append(HeldOutAuroc(layout.train_dir / config.tensorboard_dirname, sample, defective, lay))
    generator = train(config, profile, train_ds, val_ds, layout.train_dir, extra)
    layout.root.mkdir(parents=True, exist_ok=True)
    generator.save(layout.generator)
    return generator


def train_segmentation_head(generator: Any, patches: Path, profile: Any, layout: RunLayout, epochs: int,
                            steps: int, batch_size: int, seed: int = 0) -> Any:
    """Train the segmentation head on the frozen generator; save and return the two attached.

    The head learns from the training set's good patches with synthetic defects
    (trainer.segmenter_train); the validation split measures it on the same kind of
    defects. Saved as generator-segmenter.keras beside the GAN's generator.keras, which
    stays as it was.
    """
    from trainer.networks.segmenter import attach_segmenter
    from trainer.pipeline import training_dataset
    from trainer.segmenter_train import SegmenterConfig, train_segmenter

    config = SegmenterConfig(epochs=epochs, steps_per_epoch=steps, batch_size=batch_size, seed=seed)
    train_ds = training_dataset(patches, "train", batch_size, 2048, seed, repeat=True)
    val_ds = None
    if load_index(patches).count("validation"):
        val_ds = training_dataset(patches, "validation", batch_size, 2048, seed, repeat=True)
    segmenter = train_segmenter(generator, profile, train_ds, val_ds, config, layout.train_dir)
    combined = attach_segmenter(generator, segmenter)
    combined.save(layout.generator_with_segmenter)
    return combined


def load_generator(path: Path) -> Any:
    import keras

    if not Path(path).is_file():
        raise ChainError(f"no trained generator at {path} (run `vialguard-train train` first)")
    return keras.models.load_model(path, compile=False)


def kit_stream(kit: Path, recipe: Recipe) -> Any:
    """An ingested kit's patches as whole acquisitions (the inspected frames), with their labels."""
    from trainer.pipeline import labelled_dataset
    from trainer.scoring import labelled_stream

    return labelled_stream(labelled_dataset(kit), recipe.inspected_frames)


def calibrate_kit(generator: Any, profile: Any, kit: Path, train_patches: Path, recipe: Recipe,
                  served: str | None = None, anomaly_map: str = MAP_SSIM) -> Any:
    """Every score calibrated on the calibration kit (trainer.calibration_bundle), tied to the
    training data's digest; ``served`` (default: the local score fused over frames) serves;
    the local scores read ``anomaly_map`` (vialguard.local_score.MAP_KINDS)."""
    from trainer.calibration_bundle import DEFAULT_SCORE, calibrate_scores, kit_maps

    _check_kit(kit, profile)
    if anomaly_map not in MAP_KINDS:
        raise ChainError(f"unknown anomaly map '{anomaly_map}'; known: {', '.join(MAP_KINDS)}")
    if anomaly_map == MAP_STRIP:
        from vialguard.strip_reference import check_recipe

        check_recipe(recipe)  # a resampled profile gets the settings scaled to its side (at_side)
    digest = load_index(train_patches).source_digest
    maps = kit_maps(generator, kit_stream(kit, recipe), recipe, anomaly_map=anomaly_map)
    return calibrate_scores(maps, served=served or DEFAULT_SCORE, profile=profile.name,
                            patch_size=profile.patch_size, recipe=recipe, training_data_digest=digest)


def evaluate_kit(generator: Any, profile: Any, bundle: Any, kit: Path, recipe: Recipe, out: Path
                 ) -> tuple[Any, dict[str, Path]]:
    """Tables 1-3 on the held-out kit, with the severity table when the kit's dataset is at hand;
    report.md/json and roc.png under ``out``."""
    from trainer.calibration_bundle import evaluate_scores, kit_maps
    from trainer.qualification import kit_defects
    from trainer.report import write_report

    _check_kit(kit, profile)
    source = Path(load_index(kit).source)
    defects = kit_defects(source) if (source / "manifest.jsonl").is_file() else None
    evaluation = evaluate_scores(kit_maps(generator, kit_stream(kit, recipe), recipe, bundle), bundle, defects)
    out.mkdir(parents=True, exist_ok=True)
    files = write_report(evaluation, out, title=f"vialguard {profile.name} evaluation on the held-out kit")
    return evaluation, files


def export_model(generator: Any, profile: Any, bundle: Any, report_files: dict[str, Path],
                 repository: Path, recipe: Recipe) -> int:
    """Publish a new version (ONNX with the served score + calibration + statistics + report + adapter)."""
    from trainer.export import export_version
    from vialguard.triton_backend import triton_backend_files

    return export_version(generator, profile, bundle.calibration, report_files, repository, recipe,
                          bundle.calibration.training_data_digest, extra_files=triton_backend_files(),
                          local=bundle.local)


def roll_out(triton_url: str | None, version: int, repository: Path) -> None:
    """Ask Triton to load the version just published (explicit model control), if a URL is given.

    Without a URL the version only waits in the repository: a line engineer rolls it
    out with ``python -m vialguard_stack.rollout --version N`` when the line allows.
    """
    if not triton_url:
        log.info("no Triton URL given: version %d is published but not loaded", version)
        return
    from vialguard_stack.rollout import load_version

    result = load_version(triton_url, version, repository)
    log.info("Triton at %s now serves version %d (%d px patches), loaded in %.1f s",
             triton_url, result.version, result.patch_size, result.load_s)


def _check_kit(kit: Path, profile: Any) -> None:
    index = load_index(kit)
    if index.frames != "inspected":
        raise ChainError(f"{kit} was ingested with frames '{index.frames}'; a kit must be ingested with "
                         "--frames inspected (what the line scores)")
    if index.patch_size != profile.patch_size:
        raise ChainError(f"kit {kit} is {index.patch_size} px, profile '{profile.name}' takes {profile.patch_size}")


def write_summary(layout: RunLayout, scale: RunScale, timings: dict[str, float], extra: dict[str, Any]) -> None:
    layout.root.mkdir(parents=True, exist_ok=True)
    data = {"scale": asdict(scale), "seconds": {k: round(v, 1) for k, v in timings.items()}, **extra}
    layout.summary.write_text(json.dumps(data, indent=2, default=str) + "\n")

