"""A tiny on-disk dataset in vialguard's acquisition format, written directly.

Frames are 80x64 (5 vials x 16 px, 4 regions x 16 px), so an ingestion test
cuts real patches through vialguard.patching in milliseconds. The format is
the one vialguard.dataset reads: ``dataset.json`` + ``manifest.jsonl`` with
16 PNG frames per acquisition.
"""
from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np

from vialguard.recipe import Recipe, parse_recipe

TINY_RECIPE = {
    "id": "tiny-5x4",
    "frame": {"width": 80, "height": 64, "bit_depth": 8},
    "frames_per_acquisition": 16,
    "inspected_frames": [0, 7, 15],
    "patch_size": 16,
    "vials": [{"x": 16 * v, "y": 0} for v in range(5)],
    "regions": [{"id": f"R{r}", "x": 0, "y": 16 * r, "width": 16, "height": 16} for r in range(4)],
}


def tiny_recipe() -> Recipe:
    return parse_recipe(TINY_RECIPE)


def write_tiny_dataset(
    root: Path, products: int = 4, runs: int = 2, defective: tuple[int, ...] = (), seed: int = 0
) -> Path:
    """Write ``products`` x ``runs`` acquisitions; products listed in ``defective`` carry
    a defect in vial 1, region R2 (a bright square in every frame)."""
    rng = np.random.default_rng(seed)
    root.mkdir(parents=True, exist_ok=True)
    (root / "dataset.json").write_text(json.dumps({"schema": 1, "recipe": TINY_RECIPE["id"], "seed": seed}))
    lines = []
    for p in range(products):
        for r in range(runs):
            acq = f"p{p:03d}-r{r:02d}"
            folder = root / "frames" / acq
            folder.mkdir(parents=True, exist_ok=True)
            names = []
            for f in range(16):
                frame = rng.integers(40, 200, size=(64, 80), dtype=np.uint8)
                if p in defective:
                    frame[32 + 4 : 32 + 12, 16 + 4 : 16 + 12] = 255
                name = f"frames/{acq}/f{f:02d}.png"
                cv2.imwrite(str(root / name), frame)
                names.append(name)
            bad = p in defective
            defects = (
                [{"kind": "stuck_particle", "vial": 1, "region": "R2", "severity": 0.8, "mask": None,
                  "bbox": [20, 36, 8, 8]}]
                if bad
                else []
            )
            lines.append(json.dumps({
                "acquisition_id": acq, "product_id": f"p{p:03d}", "run_index": r,
                "label": "defective" if bad else "good", "frames": names, "defects": defects,
            }))
    (root / "manifest.jsonl").write_text("\n".join(lines) + "\n")
    return root
