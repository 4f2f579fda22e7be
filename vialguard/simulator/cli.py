"""Command line: write simulated kits and training sets as vialguard datasets.

    python -m vialguard.simulator.cli kit --out DIR --good 4 --defective 4 --runs 10 --seed 7
    python -m vialguard.simulator.cli train-set --out DIR --products 20 --runs 10 --seed 7
    python -m vialguard.simulator.cli bench --acquisitions 5
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

from vialguard.errors import VialguardError
from vialguard.recipe import load_recipe
from vialguard.dataset import encode_png
from vialguard.simulator.kit import make_kit, make_train_set, plan_products, run_conditions, write_dataset
from vialguard.simulator.render import StripRenderer


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
    bench = sub.add_parser("bench", help="time rendering and PNG encoding; nothing is written")
    bench.add_argument("--acquisitions", type=int, default=5, help="acquisitions to render (default 5)")
    bench.add_argument("--seed", type=int, default=0, help="random seed")
    bench.add_argument("--recipe", default="bfs5-10ml", help="recipe id or YAML path (default bfs5-10ml)")
    return parser


def _bench(recipe_name: str, n: int, seed: int) -> None:
    """Median render time per frame and per acquisition, and PNG bytes per acquisition."""
    recipe = load_recipe(recipe_name)
    plans = plan_products(recipe, 0, 1, seed)
    renderer = StripRenderer(recipe)
    started = time.perf_counter()
    layers = renderer.product_layers(plans[0].shape, list(plans[0].defects))
    layers_ms = (time.perf_counter() - started) * 1e3
    render_s, encode_s, sizes = [], [], []
    for i in range(max(n, 1)):
        run = run_conditions(plans[0], 0, i, seed)
        t0 = time.perf_counter()
        acq = renderer.render_acquisition(plans[0].shape, layers, run)
        t1 = time.perf_counter()
        sizes.append(sum(len(encode_png(f, noisy=True)) for f in acq.frames))
        encode_s.append(time.perf_counter() - t1)
        render_s.append(t1 - t0)
    frames = recipe.frames_per_acquisition
    print(f"product layers (once per product): {layers_ms:.0f} ms")
    print(f"render: {1e3 * statistics.median(render_s) / frames:.1f} ms/frame, "
          f"{1e3 * statistics.median(render_s):.0f} ms/acquisition of {frames} frames (median of {len(render_s)})")
    print(f"PNG encode: {1e3 * statistics.median(encode_s):.0f} ms/acquisition, "
          f"{statistics.median(sizes) / 2**20:.1f} MiB/acquisition on disk (plus masks of a few KB)")


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.command == "bench":
        _bench(args.recipe, args.acquisitions, args.seed)
        return 0
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
