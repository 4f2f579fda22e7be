"""Command line: write simulated kits and training sets as vialguard datasets.

    python -m vialguard.simulator.cli kit --out DIR --good 4 --defective 4 --runs 10 --seed 7
    python -m vialguard.simulator.cli train-set --out DIR --products 20 --runs 10 --seed 7
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from vialguard.errors import VialguardError
from vialguard.recipe import load_recipe
from vialguard.simulator.kit import make_kit, make_train_set, write_dataset


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m vialguard.simulator.cli",
        description="Render simulated BFS strip acquisitions (16 frames each) into a dataset folder "
        "(dataset.json + manifest.jsonl + PNG frames and defect masks).",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--out", required=True, type=Path, help="empty or new folder to write the dataset into")
    common.add_argument("--runs", type=int, default=10, help="acquisitions per product (default 10, as a Knapp kit)")
    common.add_argument("--seed", type=int, default=0, help="random seed; the same seed gives the same bytes")
    common.add_argument("--recipe", default="bfs5-10ml", help="recipe id or YAML path (default bfs5-10ml)")
    kit = sub.add_parser("kit", parents=[common], help="Knapp-style kit: good and defective products x runs")
    kit.add_argument("--good", type=int, required=True, help="number of good products")
    kit.add_argument("--defective", type=int, required=True, help="number of defective products")
    kit.add_argument("--severity-min", type=float, default=0.05, help="lightest defect severity in [0, 1]")
    kit.add_argument("--severity-max", type=float, default=1.0, help="heaviest defect severity in [0, 1]")
    train = sub.add_parser("train-set", parents=[common], help="good products only, for training")
    train.add_argument("--products", type=int, required=True, help="number of good products")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    started = time.perf_counter()
    try:
        recipe = load_recipe(args.recipe)
        if args.command == "kit":
            severity = (args.severity_min, args.severity_max)
            acquisitions = make_kit(args.good, args.defective, args.runs, args.seed, recipe, severity)
            params = {"kind": "kit", "good": args.good, "defective": args.defective, "runs": args.runs,
                      "severity_range": list(severity)}
        else:
            acquisitions = make_train_set(args.products, args.runs, args.seed, recipe)
            params = {"kind": "train-set", "good": args.products, "defective": 0, "runs": args.runs}
        header = write_dataset(args.out, acquisitions, recipe, args.seed, params)
    except VialguardError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    n = header.counts["acquisitions"]
    print(f"wrote {n} acquisitions ({header.counts['products']} products) to {args.out} "
          f"in {time.perf_counter() - started:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
