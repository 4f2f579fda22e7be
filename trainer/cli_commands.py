"""What each ``vialguard-train`` subcommand does with its parsed arguments.

Thin: arguments -> settings objects -> :mod:`trainer.chain` steps. Each
returns the process exit code.
"""
from __future__ import annotations

import argparse
import json
import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from trainer import chain
from trainer.ingest import IngestOptions, ingest
from trainer.run_scale import SCALE_FLAGS, RunScale, get_scale
from vialguard.recipe import load_recipe

log = logging.getLogger("vialguard-train")


def scale_of(args: argparse.Namespace) -> RunScale:
    return get_scale(args.scale).with_overrides(**{k: getattr(args, k, None) for k in SCALE_FLAGS})


def _profile(name: str) -> Any:
    from trainer.config import get_profile

    return get_profile(name)


def _train_config(args: argparse.Namespace, scale: RunScale | None = None) -> Any:
    from trainer.config import load_train_config

    flags = []
    epochs = getattr(args, "epochs", None) or (scale.epochs if scale else None)
    steps = getattr(args, "steps", None) or (scale.steps_per_epoch if scale else None)
    batch = getattr(args, "batch_size", None) or (scale.batch_size if scale else None)
    seed = getattr(args, "seed", None)
    learning_rate = scale.learning_rate if scale else None
    for name, value in (("epochs", epochs), ("steps_per_epoch", steps), ("batch_size", batch), ("seed", seed),
                        ("learning_rate", learning_rate)):
        if value is not None:
            flags.append(f"{name}={value}")
    flags += list(scale.train_settings) if scale else []
    # flags first, so that an explicit --set wins over a preset
    return load_train_config(getattr(args, "config", None), flags + list(getattr(args, "overrides", [])))


def cmd_simulate(args: argparse.Namespace) -> int:
    scale = scale_of(args)
    paths = chain.simulate_all(chain.RunLayout(args.workdir), load_recipe(args.recipe), scale, args.seed)
    for name, path in paths.items():
        print(f"{name}: {path}")
    return 0


def cmd_ingest(args: argparse.Namespace) -> int:
    from vialguard.dataset import read_header

    recipe = load_recipe(args.recipe or read_header(args.dataset).recipe_id)
    patch_size = args.patch_size or _profile(args.profile).patch_size
    options = IngestOptions(
        frames=args.frames, patch_size=patch_size, shard_size=args.shard_size,
        compression="GZIP" if args.gzip else "", val_fraction=args.val_fraction, seed=args.seed,
        workers=args.workers,
    )
    index = ingest(args.dataset, args.out, recipe, options, overwrite=args.overwrite)
    rate = index.count(None) / max(index.seconds, 1e-9)
    print(f"{index.count(None)} patches ({index.patch_size} px) in "
          f"{sum(len(s.shards) for s in index.splits.values())} shards, {index.seconds:.1f} s "
          f"({rate:.0f} patches/s); train {index.count('train')}, validation {index.count('validation')}")
    print(f"index: {Path(args.out) / 'index.json'}  source digest: {index.source_digest}")
    return 0


def cmd_train(args: argparse.Namespace) -> int:
    profile = _profile(args.profile)
    config = _train_config(args)
    layout = chain.RunLayout(args.workdir)
    chain.train_generator(args.patches, profile, config, layout, args.shuffle_buffer)
    print(f"generator: {layout.generator}")
    return 0


def cmd_segment(args: argparse.Namespace) -> int:
    profile = _profile(args.profile)
    layout = chain.RunLayout(args.workdir)
    chain.train_segmentation_head(chain.load_generator(args.generator), args.patches, profile, layout, args.epochs,
                                  args.steps, args.batch_size, args.seed)
    print(f"generator with segmentation head: {layout.generator_with_segmenter}")
    return 0


def cmd_calibrate(args: argparse.Namespace) -> int:
    profile, recipe = _profile(args.profile), load_recipe(args.recipe)
    bundle = chain.calibrate_kit(chain.load_generator(args.generator), profile, args.kit, args.train_patches,
                                 recipe, args.score, args.anomaly_map)
    bundle.save(args.out)
    cal = bundle.calibration
    print(f"calibration: {args.out}  score {cal.score}, serving {cal.serving} thresholds: "
          f"{cal.serving_thresholds.as_mapping()}")
    return 0


def cmd_evaluate(args: argparse.Namespace) -> int:
    from trainer.calibration_bundle import CalibrationBundle

    profile, recipe = _profile(args.profile), load_recipe(args.recipe)
    bundle = CalibrationBundle.load(args.calibration)
    evaluation, files = chain.evaluate_kit(chain.load_generator(args.generator), profile, bundle, args.kit,
                                           recipe, args.out)
    print(f"run accuracy {evaluation.per_run.accuracy:.4f}, strip accuracy {evaluation.per_strip.accuracy:.4f}; "
          f"report: {', '.join(str(p) for p in files.values())}")
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    from trainer.calibration_bundle import CalibrationBundle
    from vialguard.inspector_io import REPORT_JSON_FILENAME, REPORT_MD_FILENAME, ROC_PNG_FILENAME

    profile, recipe = _profile(args.profile), load_recipe(args.recipe)
    files = {name: args.report_dir / name for name in (REPORT_MD_FILENAME, REPORT_JSON_FILENAME, ROC_PNG_FILENAME)}
    version = chain.export_model(chain.load_generator(args.generator), profile,
                                 CalibrationBundle.load(args.calibration), files, args.out, recipe)
    print(f"published inspector version {version} in {args.out}")
    chain.roll_out(args.triton, version, args.out)
    return 0


def cmd_all(args: argparse.Namespace) -> int:
    scale, recipe = scale_of(args), load_recipe(args.recipe)
    profile = _profile(args.profile or scale.profile)
    config = _train_config(args, scale)
    layout = chain.RunLayout(args.workdir or chain.default_workdir())
    log.info("run %s: scale %s, profile %s, work directory %s", scale.name, scale, profile.name, layout.root)
    timings: dict[str, float] = {}

    def step(name: str, fn: Callable[[], Any]) -> Any:
        started = time.monotonic()
        log.info("== %s", name)
        result = fn()
        timings[name] = time.monotonic() - started
        log.info("== %s done in %.1f s", name, timings[name])
        return result

    step("simulate", lambda: chain.simulate_all(layout, recipe, scale, args.seed))
    patches = step("ingest", lambda: chain.ingest_all(layout, recipe, profile.patch_size, scale, args.seed))
    generator = step("train", lambda: chain.train_generator(patches["train"], profile, config, layout,
                                                            scale.shuffle_buffer, scale.validation_steps,
                                                            heldout_kit=patches["calibration"], recipe=recipe))
    if scale.segmenter_epochs:
        generator = step("segment", lambda: chain.train_segmentation_head(
            generator, patches["train"], profile, layout, scale.segmenter_epochs, scale.segmenter_steps,
            scale.batch_size, config.seed))
    bundle = step("calibrate", lambda: chain.calibrate_kit(generator, profile, patches["calibration"],
                                                           patches["train"], recipe, anomaly_map=scale.anomaly_map))
    bundle.save(layout.calibration_dir)
    calibration = bundle.calibration
    evaluation, files = step("evaluate", lambda: chain.evaluate_kit(generator, profile, bundle,
                                                                    patches["test"], recipe, layout.evaluation_dir))
    version = step("export", lambda: chain.export_model(generator, profile, bundle, files, args.out, recipe))
    chain.write_summary(layout, scale, timings, {
        "profile": profile.name, "version": version, "repository": str(args.out),
        "training_data_digest": calibration.training_data_digest,
        "run_accuracy": evaluation.per_run.accuracy, "strip_accuracy": evaluation.per_strip.accuracy,
    })
    print(f"published inspector version {version} in {args.out} "
          f"(run accuracy {evaluation.per_run.accuracy:.4f} on the held-out kit); work files in {layout.root}")
    step("rollout", lambda: chain.roll_out(args.triton, version, args.out))
    return 0


def cmd_elpv(args: argparse.Namespace) -> int:
    from trainer.elpv_check import ElpvSettings, run_elpv_check

    settings = ElpvSettings(profile=args.profile, patch_size=args.patch_size, epochs=args.epochs,
                            steps_per_epoch=args.steps, batch_size=args.batch_size, max_train=args.max_train,
                            seed=args.seed, overrides=tuple(args.overrides),
                            generator=str(args.generator) if args.generator else None,
                            segmenter_epochs=args.segmenter_epochs)
    report = run_elpv_check(args.out, settings)
    test = report["test"]
    print(json.dumps({"test_auroc": test["auroc"], "test_auroc_normalised": test["auroc_normalised"],
                      "test_accuracy": test["per_type_thresholds"]["accuracy"],
                      "test_balanced_accuracy": test["per_type_thresholds"]["balanced_accuracy"],
                      "thresholds": report["thresholds"]}))
    print(f"report: {Path(args.out) / 'elpv_report.md'}")
    return 0


def cmd_validate(args: argparse.Namespace) -> int:
    from trainer.validate import validate_version

    evaluation, files = validate_version(args.repository, args.version, args.kit, args.out)
    print(f"version {args.version} on {args.kit}: run accuracy {evaluation.per_run.accuracy:.4f}, strip accuracy "
          f"{evaluation.per_strip.accuracy:.4f}, strip AUROC {evaluation.roc['strip'].auroc:.4f}; "
          f"report: {', '.join(str(p) for p in files.values())}")
    return 0


def cmd_visibility(args: argparse.Namespace) -> int:
    import json

    from trainer.visibility import kit_visibility, summary_lines, write_json

    defects = kit_visibility(load_recipe(args.recipe), args.good, args.defective, args.runs, args.seed)
    report = json.loads(args.report.read_text()) if args.report else None
    print("\n".join(summary_lines(defects, report)))
    if args.json:
        write_json(defects, args.json)
    return 0


def cmd_outline(args: argparse.Namespace) -> int:
    from trainer.outline_screen import screen

    regions = tuple(int(r) for r in args.regions.split(",") if r.strip())
    print("\n".join(screen(args.calibration, args.test, load_recipe(args.recipe), regions)))
    return 0


def cmd_add_outline(args: argparse.Namespace) -> int:
    from trainer.export import OPSET
    from trainer.onnx_outline_graph import outline_version, validated_outline_version
    from trainer.outline_screen import fit_outline, kit_outlines
    from vialguard.local_score import PatchLayout
    from vialguard.model_repository import latest_version

    recipe = load_recipe(args.recipe)
    regions = tuple(int(r) for r in args.regions.split(",") if r.strip())
    source = args.version or latest_version(args.repository)
    if source is None:
        raise ValueError(f"no published version in {args.repository}")
    outline = fit_outline(kit_outlines(args.calibration, recipe, regions), regions)
    layout = PatchLayout.from_recipe(recipe)
    if args.validate_kit:
        report_dir = args.report_dir or args.repository.parent / "runs" / f"validate-outline-{source}"
        version = validated_outline_version(args.repository, source, outline, layout, OPSET, args.validate_kit,
                                            report_dir)
    else:
        reports = ({name: args.report_dir / name for name in ("report.md", "report.json", "roc.png")
                    if (args.report_dir / name).is_file()} if args.report_dir else None)
        version = outline_version(args.repository, source, outline, layout, OPSET, reports)
    print(f"version {version}: version {source} with the outline of "
          f"{', '.join(f'R{r}' for r in regions)} (threshold {outline.threshold:.2f} z) in its score")
    return 0


def cmd_import(args: argparse.Namespace) -> int:
    from vialguard.dataset_import import import_folder

    header = import_folder(args.source, args.out, load_recipe(args.recipe))
    print(f"imported {header.counts['acquisitions']} acquisitions of {header.counts['products']} products "
          f"({header.counts['good_acquisitions']} good, {header.counts['defective_acquisitions']} defective) "
          f"into {args.out}")
    return 0


COMMANDS: dict[str, Callable[[argparse.Namespace], int]] = {
    "simulate": cmd_simulate, "ingest": cmd_ingest, "train": cmd_train, "segment": cmd_segment, "calibrate": cmd_calibrate,
    "evaluate": cmd_evaluate, "export": cmd_export, "all": cmd_all, "elpv": cmd_elpv,
    "validate": cmd_validate, "import": cmd_import, "visibility": cmd_visibility,
    "outline": cmd_outline, "add-outline": cmd_add_outline,
}

