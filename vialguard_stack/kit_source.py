"""Where the simulated camera's acquisitions come from: a kit on disk, or one rendered now.

Both are lazy: one acquisition is read or rendered just before it is pushed, so a
kit of any size needs the memory of one acquisition, and rendering never runs
while a verdict is awaited (it would steal the CPU the inference needs).

Held-out seed: the trainer draws its training set and its two kits from seeds 0,
1 and 2 by default (trainer/cli.py), so the demo's default kit seed is far from
those and its products were never seen in training or calibration.
"""
from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from vialguard.dataset import acquisition_id, iter_acquisitions, load_frames, read_header
from vialguard.errors import DatasetError
from vialguard.recipe import Recipe
from vialguard.simulator.kit import make_kit
from vialguard_stack.camera import Shot

HELD_OUT_SEED = 20_261_129


def simulated_shots(recipe: Recipe, good: int, defective: int, runs: int,
                    seed: int = HELD_OUT_SEED) -> Iterator[Shot]:
    """A Knapp-style kit rendered on the fly: good + defective products x runs acquisitions."""
    for acq in make_kit(good, defective, runs, seed, recipe):
        f = acq.fields
        yield Shot(acquisition_id(f.product_id, f.run_index), f.product_id, f.run_index, acq.frames, f.label)


def directory_shots(root: Path, recipe: Recipe) -> Iterator[Shot]:
    """The acquisitions of a dataset folder written by the simulator (or by a real camera export)."""
    header = read_header(root)
    if header.recipe_id != recipe.id:
        raise DatasetError(f"{root} holds acquisitions of recipe '{header.recipe_id}', "
                           f"but the stack runs recipe '{recipe.id}'")
    for record in iter_acquisitions(root):
        frames = load_frames(root, record)
        yield Shot(record.acquisition_id, record.product_id, record.run_index, frames, record.label)
