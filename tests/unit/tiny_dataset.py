"""A tiny on-disk dataset in vialguard's acquisition format (vialguard.dataset's writer).

Frames are 80x64 (5 vials x 16 px, 4 regions x 16 px) of random noise, so an
ingestion test cuts real patches through vialguard.patching in milliseconds
and every patch differs from every other.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from vialguard.dataset import AcquisitionFields, DatasetWriter, DefectFields
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
    a defect in vial 1, region R2 (a bright square, with its mask)."""
    rng = np.random.default_rng(seed)
    recipe = tiny_recipe()
    mask = np.zeros((64, 80), bool)
    mask[32 + 4 : 32 + 12, 16 + 4 : 16 + 12] = True
    with DatasetWriter(root, recipe, seed, {"name": "tests.tiny_dataset"}) as writer:
        for p in range(products):
            bad = p in defective
            for r in range(runs):
                frames = rng.integers(40, 200, size=(16, 64, 80), dtype=np.uint8)
                if bad:
                    frames[:, mask] = 255
                defects = (DefectFields("stuck_particle", 1, 2, 0.8),) if bad else ()
                fields = AcquisitionFields(f"p{p:03d}", r, "defective" if bad else "good", defects)
                writer.add(fields, frames, [mask] if bad else [])
    return root
