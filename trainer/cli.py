"""``vialguard-train``: the trainer's command line (``python -m trainer.cli``).

Subcommands, in chain order: simulate, ingest, train, calibrate, evaluate,
export; ``all`` runs the whole chain and publishes a new version:

    python -m trainer.cli all --profile cpu --out model_repository

is the reproduction command of the committed cpu version (about 15-25 min on
2 cores). ``--scale paper`` is the paper's setup; any size can be overridden
(``--train-products``, ``--epochs``, ``--steps`` ...). ``elpv`` runs the
real-data check on PyPI's elpv-dataset. Work files (datasets, shards,
checkpoints, TensorBoard) go to ``--workdir`` (default ./runs/<UTC time>).
"""
from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from trainer.cli_commands import COMMANDS  # noqa: E402  (commands import TensorFlow lazily)
from trainer.run_scale import SCALE_FLAGS, SCALES  # noqa: E402
from trainer.shard_index import FRAME_MODES  # noqa: E402
from vialguard.errors import VialguardError  # noqa: E402
from vialguard.local_score import MAP_KINDS, MAP_STRIP, SCORE_KINDS, SCORE_LOCAL_FUSED  # noqa: E402
from vialguard.recipe import DEFAULT_RECIPE_ID  # noqa: E402

log = logging.getLogger("vialguard-train")


def _existing_dir(text: str) -> Path:
    path = Path(text)
    if not path.is_dir():
        raise argparse.ArgumentTypeError(f"directory not found: {path}")
    return path


def _existing_file(text: str) -> Path:
    path = Path(text)
    if not path.is_file():
        raise argparse.ArgumentTypeError(f"file not found: {path}")
    return path


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text}")
    return value


def _add_scale_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("--scale", choices=sorted(SCALES), default="cpu", help="preset sizes (default: cpu)")
    p.add_argument("--seed", type=int, default=0, help="training set seed; kits use seed+1 and seed+2")
    for name in SCALE_FLAGS:
        flag = "--steps" if name == "steps_per_epoch" else f"--{name.replace('_', '-')}"
        if name == "anomaly_map":
            p.add_argument(flag, dest=name, choices=MAP_KINDS, default=None,
                           help="the map the local scores read (default: the preset's; cpu and paper: strip)")
            continue
        p.add_argument(flag, dest=name, type=_positive_int, default=None, help=f"override the preset's {name}")


def _add_model_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("--profile", default="cpu", help="model profile: cpu or paper (default: cpu)")
    p.add_argument("--recipe", default=DEFAULT_RECIPE_ID, help="recipe id or YAML path")


def _add_train_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", type=_existing_file, help="training settings YAML (trainer.config.TrainConfig)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="NAME=VALUE",
                   help="override one training setting, e.g. --set learning_rate=1e-4 (repeatable)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="vialguard-train", description=__doc__.split("\n\n")[0])
    parser.add_argument("--log-level", default="INFO", choices=["DEBUG", "INFO", "WARNING", "ERROR"])
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("simulate", help="simulate the training set, calibration kit and held-out test kit")
    p.add_argument("--workdir", type=Path, required=True, help="data goes to WORKDIR/data/{train,calibration,test}")
    p.add_argument("--recipe", default=DEFAULT_RECIPE_ID, help="recipe id or YAML path")
    _add_triton_flag(p)
    _add_scale_flags(p)

    p = sub.add_parser("ingest", help="cut a dataset into patches and write sharded TFRecords + index.json")
    p.add_argument("--dataset", type=_existing_dir, required=True, help="dataset directory (dataset.json, ...)")
    p.add_argument("--out", type=Path, required=True, help="output directory for shards and index.json")
    p.add_argument("--frames", choices=FRAME_MODES, default="all+rank",
                   help="all+rank: 16 frames + 2 rank images of good products (training); "
                        "inspected: the 3 inspected frames of every product (calibration/evaluation)")
    p.add_argument("--profile", default="cpu", help="model profile whose patch size to cut (default: cpu)")
    p.add_argument("--recipe", help="recipe id or YAML path (default: the one named in dataset.json)")
    p.add_argument("--patch-size", type=_positive_int, help="override the profile's patch size")
    p.add_argument("--shard-size", type=_positive_int, default=2048, help="patches per shard (default 2048)")
    p.add_argument("--gzip", action="store_true",
                   help="GZIP the shards (about 35%% smaller at 256 px, about 3x slower to write)")
    p.add_argument("--val-fraction", type=float, default=0.1, help="share of PRODUCTS held out for validation")
    p.add_argument("--seed", type=int, default=0, help="seed of the product split")
    p.add_argument("--workers", type=_positive_int, default=2, help="threads decoding and cutting frames")
    p.add_argument("--overwrite", action="store_true", help="replace an existing ingestion in --out")

    p = sub.add_parser("train", help="train the GAN on an ingested training set")
    p.add_argument("--patches", type=_existing_dir, required=True, help="ingested training set (index.json)")
    p.add_argument("--workdir", type=Path, required=True, help="checkpoints, TensorBoard and generator.keras")
    _add_model_flags(p)
    _add_train_flags(p)
    p.add_argument("--epochs", type=_positive_int)
    p.add_argument("--steps", type=_positive_int, help="steps per epoch (default: one pass over the patches)")
    p.add_argument("--batch-size", type=_positive_int)
    p.add_argument("--shuffle-buffer", type=_positive_int, default=4096)

    p = sub.add_parser("segment", help="train the segmentation head (GRD-Net) on a trained, frozen generator")
    p.add_argument("--generator", type=_existing_file, required=True, help="generator.keras from `train`")
    p.add_argument("--patches", type=_existing_dir, required=True, help="ingested training set (index.json)")
    p.add_argument("--workdir", type=Path, required=True,
                   help="writes WORKDIR/generator-segmenter.keras (pass it as --generator to calibrate/export)")
    p.add_argument("--profile", default="cpu", help="model profile: cpu or paper (default: cpu)")
    p.add_argument("--epochs", type=_positive_int, default=12, help="epochs of --steps (default 12: the measured head)")
    p.add_argument("--steps", type=_positive_int, default=250, help="steps per epoch")
    p.add_argument("--batch-size", type=_positive_int, default=16)
    p.add_argument("--seed", type=int, default=0)

    for name, what in (("calibrate", "per-region thresholds on a calibration kit"),
                       ("evaluate", "Tables 1-3 of a calibrated model on a held-out kit")):
        p = sub.add_parser(name, help=what)
        p.add_argument("--generator", type=_existing_file, required=True, help="generator.keras from `train`")
        p.add_argument("--kit", type=_existing_dir, required=True, help="kit ingested with --frames inspected")
        _add_model_flags(p)
        if name == "calibrate":
            p.add_argument("--train-patches", type=_existing_dir, required=True,
                           help="ingested training set (its source digest is recorded)")
            p.add_argument("--out", type=Path, required=True,
                           help="calibration directory to write (calibration.json of the served score, "
                                "every score's calibration and local-score statistics)")
            p.add_argument("--score", choices=SCORE_KINDS, default=SCORE_LOCAL_FUSED,
                           help="the score the version serves (default: local-fused; every score is "
                                "calibrated and compared in the report)")
            p.add_argument("--anomaly-map", choices=MAP_KINDS, default=MAP_STRIP,
                           help="the map the local scores read: strip (each vial against the other vials of "
                                "its strip; native-size regions), ssim (the generator's 1 - SSIM residual) or "
                                "segmenter (the head of --generator); default strip")
        else:
            p.add_argument("--calibration", type=_existing_dir, required=True, help="output of `calibrate`")
            p.add_argument("--out", type=Path, required=True, help="directory for report.md/json, roc.png")

    p = sub.add_parser("export", help="publish generator + calibration + report as a new model version")
    p.add_argument("--generator", type=_existing_file, required=True)
    p.add_argument("--calibration", type=_existing_dir, required=True, help="output of `calibrate`")
    p.add_argument("--report-dir", type=_existing_dir, required=True, help="output of `evaluate`")
    p.add_argument("--out", type=Path, default=Path("model_repository"), help="model repository")
    _add_triton_flag(p)
    _add_model_flags(p)

    p = sub.add_parser("validate", help="Tables 1-3 and the severity table of a published version on any kit, "
                                        "scored by the version's own ONNX and calibration as served")
    p.add_argument("--version", type=_positive_int, required=True, help="published version number")
    p.add_argument("--kit", type=_existing_dir, required=True,
                   help="kit in the dataset format (simulator.cli kit, or `import` of a line's own kit)")
    p.add_argument("--repository", type=_existing_dir, default=Path("model_repository"), help="model repository")
    p.add_argument("--out", type=Path, required=True, help="directory for report.md/json, roc.png")

    p = sub.add_parser("visibility", help="how much of each defect of a simulated kit the inspected pixels hold "
                                          "(d' against the sensor noise), beside a version's detection on that kit")
    p.add_argument("--seed", type=int, required=True, help="the kit's simulator seed (simulate: --seed + 2 for test)")
    p.add_argument("--good", type=_positive_int, default=20)
    p.add_argument("--defective", type=_positive_int, default=20)
    p.add_argument("--runs", type=_positive_int, default=10)
    p.add_argument("--recipe", default=DEFAULT_RECIPE_ID, help="recipe id or YAML path")
    p.add_argument("--report", type=_existing_file, help="a version's report.json on the same kit, to show beside")
    p.add_argument("--json", type=Path, help="write every defect's figures here")

    p = sub.add_parser("outline", help="screen the sub-pixel outline measurement on its own: threshold from "
                                       "a calibration kit, false rejects and detections on a held-out kit")
    p.add_argument("--calibration", type=_existing_dir, required=True, help="ingested calibration kit (patches)")
    p.add_argument("--test", type=_existing_dir, required=True, help="ingested held-out kit (patches)")
    p.add_argument("--regions", default="1", help="comma-separated regions (default 1: neck and shoulder)")
    p.add_argument("--recipe", default=DEFAULT_RECIPE_ID, help="recipe id or YAML path")

    p = sub.add_parser("add-outline", help="publish a copy of a version with the outline measurement folded into "
                                           "its score (statistics and threshold from the calibration kit)")
    p.add_argument("--version", type=_positive_int, help="published version to derive from (default: the newest)")
    p.add_argument("--calibration", type=_existing_dir, required=True,
                   help="the version's ingested calibration kit (patches)")
    p.add_argument("--validate-kit", type=_existing_dir,
                   help="held-out kit (dataset): the new graph is validated on it first, its report published with it")
    p.add_argument("--regions", default="1", help="comma-separated regions (default 1: neck and shoulder)")
    p.add_argument("--repository", type=_existing_dir, default=Path("model_repository"), help="model repository")
    p.add_argument("--report-dir", type=Path, help="report.md/json and roc.png of the new graph: written there with "
                                                  "--validate-kit, else taken from there (an earlier validate)")
    p.add_argument("--recipe", default=DEFAULT_RECIPE_ID, help="recipe id or YAML path")

    p = sub.add_parser("import", help="a line's own acquisitions (good/<product>/<run>/*.png, "
                                      "defective/<product>/<run>/*.png) into the dataset format")
    p.add_argument("--source", type=_existing_dir, required=True, help="folder with good/ and defective/")
    p.add_argument("--out", type=Path, required=True, help="new dataset folder")
    p.add_argument("--recipe", default=DEFAULT_RECIPE_ID, help="recipe id or YAML path")

    p = sub.add_parser("all", help="simulate -> ingest -> train -> calibrate -> evaluate -> export")
    p.add_argument("--out", type=Path, default=Path("model_repository"), help="model repository to publish into")
    p.add_argument("--workdir", type=Path, help="work directory (default ./runs/<UTC time>)")
    p.add_argument("--profile", help="model profile (default: the scale's: cpu -> cpu, paper -> paper, "
                                     "smoke -> tiny)")
    p.add_argument("--recipe", default=DEFAULT_RECIPE_ID, help="recipe id or YAML path")
    _add_triton_flag(p)
    _add_scale_flags(p)
    _add_train_flags(p)

    p = sub.add_parser("elpv", help="real-data check on PyPI's elpv-dataset (solar cells)")
    p.add_argument("--out", type=Path, required=True, help="directory for elpv_report.{json,md}")
    p.add_argument("--profile", default="cpu")
    p.add_argument("--patch-size", type=_positive_int, help="cells are resized to this (default: the profile's)")
    p.add_argument("--epochs", type=_positive_int, help="training epochs (default: the cpu scale's, 16)")
    p.add_argument("--steps", type=_positive_int, help="steps per epoch (default: the cpu scale's, 250)")
    p.add_argument("--batch-size", type=_positive_int, default=16)
    p.add_argument("--max-train", type=_positive_int, help="cap on good training cells")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="NAME=VALUE")
    p.add_argument("--generator", type=_existing_file, help="judge this saved generator.keras instead of training")
    p.add_argument("--segmenter-epochs", type=int, default=None,
                   help="epochs of the segmentation head (default: the cpu scale's; 0: no head)")
    return parser


def _add_triton_flag(p: argparse.ArgumentParser) -> None:
    p.add_argument("--triton", metavar="HOST:PORT", default=os.environ.get("VIALGUARD_TRITON_URL"),
                   help="after publishing, ask this Triton (gRPC) to load the new version with explicit "
                        "model control and pin it (default: $VIALGUARD_TRITON_URL; unset: publish only)")


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=args.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    from trainer.config import ConfigError

    try:
        return COMMANDS[args.command](args)
    except (VialguardError, ConfigError, ValueError, FileNotFoundError) as exc:
        print(f"vialguard-train {args.command}: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
