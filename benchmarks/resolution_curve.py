"""Detection against cost at 64, 128 and 256 px: the curve behind the cpu profile's patch size.

For each patch side the cpu architecture is trained on the same simulated training
set, calibrated on the same calibration kit and judged on the same held-out kit (an
existing ``trainer.cli all`` work directory: its data/ folder is reused, patches are
cut again at each side), and its served graph is timed under ONNX Runtime on 2
threads. Prints one row per side: held-out strip AUROC of the served (fused local)
score and of phi, strip and run accuracy, ms per 60-patch acquisition.

    python -m benchmarks.resolution_curve --workdir runs/<run> --sizes 64,128 --epochs 4

Training here is short (``--epochs`` x ``--steps``); say so beside the figures. The
served score is the cpu scale's (the strip reference map, its pixel settings scaled to
the side by StripReferenceParams.at_side), which does not read the generator: the
training sets only phi and the weights of the graph that is timed.
Prints figures only; never fails on them.
"""
from __future__ import annotations

import argparse
import os
from dataclasses import replace
from pathlib import Path

from benchmarks.machine import this_machine

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def run_side(workdir: Path, side: int, epochs: int, steps: int, seed: int = 0) -> dict[str, float]:
    from benchmarks.inference import time_profile
    from trainer import chain
    from trainer.cli_commands import _train_config
    from trainer.config import get_profile
    from trainer.ingest import IngestOptions, ingest
    from trainer.run_scale import get_scale
    from vialguard.recipe import load_recipe

    base = get_profile("cpu")
    profile = replace(base, name=f"cpu-{side}", patch_size=side)
    recipe, scale = load_recipe(), get_scale("cpu")
    source = chain.RunLayout(workdir)
    layout = chain.RunLayout(workdir / f"curve-{side}")
    for name in chain.SETS:
        out = layout.patches(name)
        if not (out / "index.json").is_file():
            training = name == "train"
            ingest(source.data(name), out, recipe, IngestOptions(
                frames="all+rank" if training else "inspected", patch_size=side, shard_size=scale.shard_size,
                val_fraction=scale.val_fraction if training else 0.0, seed=seed, workers=1), overwrite=True)
    args = argparse.Namespace(seed=seed, overrides=[f"epochs={epochs}", f"steps_per_epoch={steps}",
                                                    f"restart_samples={epochs * steps * scale.batch_size}"],
                              config=None)
    config = _train_config(args, scale)
    generator = chain.train_generator(layout.patches("train"), profile, config, layout, scale.shuffle_buffer,
                                      scale.validation_steps)
    bundle = chain.calibrate_kit(generator, profile, layout.patches("calibration"), layout.patches("train"), recipe,
                                 anomaly_map=scale.anomaly_map)
    evaluation, _ = chain.evaluate_kit(generator, profile, bundle, layout.patches("test"), recipe,
                                       layout.evaluation_dir)
    compared = evaluation.qualification["scores_compared"]
    timing = time_profile("cpu", 20, 3, 2, layout.generator, patch_size=side)
    return {"side": side, "steps": epochs * steps, "strip_auroc": evaluation.roc["strip"].auroc,
            "phi_strip_auroc": compared["phi"]["strip_auroc"] if "phi" in compared else float("nan"),
            "strip_accuracy": compared[bundle.served]["strip"]["accuracy"],
            "run_accuracy": compared[bundle.served]["run"]["accuracy"], "ms": timing.median_ms}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workdir", type=Path, required=True, help="a `trainer.cli all` work directory")
    parser.add_argument("--sizes", default="64,128", help="patch sides, comma-separated")
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--steps", type=int, default=250)
    args = parser.parse_args(argv)
    print(this_machine().line(), flush=True)
    rows = [run_side(args.workdir, int(s), args.epochs, args.steps) for s in args.sizes.split(",") if s.strip()]
    print("| patch side | training steps | strip AUROC (served) | strip AUROC (phi) | strip accuracy | "
          "run accuracy | ms / acquisition (ORT, 2 threads) |")
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['side']} | {r['steps']} | {r['strip_auroc']:.4f} | {r['phi_strip_auroc']:.4f} | "
              f"{r['strip_accuracy']:.4f} | {r['run_accuracy']:.4f} | {r['ms']:.1f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
