"""Knapp-style test kits and good-only training sets, deterministic by seed.

A kit is N good and M defective products, each acquired ``runs`` times. A product
keeps its shape and its defects in every run; pose, light, noise, bubbles, drops
and slosh change. Every random draw comes from a stream keyed by (seed, purpose,
product number, what): a product's shape and runs depend on nothing else (which
numbers are defective depends on the kit's counts), and a training set never
repeats a kit's products for the same seed.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np

from vialguard.dataset import AcquisitionFields, DatasetHeader, DatasetWriter, DefectFields
from vialguard.errors import SimulatorError
from vialguard.recipe import Recipe, load_recipe
from vialguard.simulator.defects import DEFECT_KINDS, DEFECT_REGIONS, DefectSpec, place_defect
from vialguard.simulator.render import StripRenderer
from vialguard.simulator.handling import RunConditions, draw_run
from vialguard.simulator.strip import ProductShape, draw_product

GENERATOR_NAME = "vialguard.simulator"
GENERATOR_VERSION = 1
_PURPOSE = {"kit": 1, "train": 2}
_PRODUCT, _DEFECTS, _RUN, _ORDER = 0, 1, 2, 3


@dataclass(frozen=True)
class ProductPlan:
    """One product of a kit: id, label, shape and (for a defective one) its placed defects."""

    product_id: str
    label: str
    shape: ProductShape
    defects: tuple[DefectSpec, ...]


@dataclass(frozen=True)
class SimulatedAcquisition:
    """One rendered acquisition, ready for :meth:`vialguard.dataset.DatasetWriter.add`."""

    fields: AcquisitionFields
    frames: np.ndarray
    masks: list[np.ndarray]


def _stream(seed: int, purpose: str, *keys: int) -> np.random.Generator:
    return np.random.default_rng([int(seed), _PURPOSE[purpose], *keys])


def _draw_defects(product: ProductShape, recipe: Recipe, kind: str, severity_range: tuple[float, float],
                  second_prob: float, rng: np.random.Generator) -> tuple[DefectSpec, ...]:
    """One defect of the given kind, sometimes a second of any kind, each at a free (vial, region)."""
    kinds = [kind] + ([str(rng.choice(DEFECT_KINDS))] if rng.random() < second_prob else [])
    specs = []
    for k in kinds:
        for _attempt in range(20):
            severity = float(rng.uniform(*severity_range))
            vial = int(rng.integers(0, len(recipe.vials)))
            region = int(rng.choice(DEFECT_REGIONS[k]))
            try:
                specs.append(place_defect(k, vial, region, severity, product, recipe, rng))
                break
            except SimulatorError:
                continue  # no room there at this size: try another vial/region
        else:
            raise SimulatorError(f"could not place a {k} anywhere on recipe '{recipe.id}'")
    return tuple(specs)


def plan_products(recipe: Recipe, n_good: int, n_defective: int, seed: int, purpose: str = "kit",
                  severity_range: tuple[float, float] = (0.05, 1.0), second_defect_prob: float = 0.2
                  ) -> list[ProductPlan]:
    """Draw the products of a kit; good and defective ones interleaved in a seeded order."""
    if n_good < 0 or n_defective < 0 or n_good + n_defective == 0:
        raise SimulatorError(f"a kit needs at least one product, got {n_good} good and {n_defective} defective")
    lo, hi = severity_range
    if not 0.0 <= lo <= hi <= 1.0:
        raise SimulatorError(f"severity range must satisfy 0 <= low <= high <= 1, got {severity_range}")
    labels = np.array(["good"] * n_good + ["defective"] * n_defective)
    _stream(seed, purpose, _ORDER).shuffle(labels)
    kinds = [DEFECT_KINDS[i % len(DEFECT_KINDS)] for i in range(n_defective)]
    _stream(seed, purpose, _ORDER, 1).shuffle(kinds)
    plans = []
    for number, label in enumerate(labels):
        product_id = f"P{number:04d}"
        shape = draw_product(recipe, product_id, _stream(seed, purpose, number, _PRODUCT))
        defects: tuple[DefectSpec, ...] = ()
        if label == "defective":
            rng = _stream(seed, purpose, number, _DEFECTS)
            defects = _draw_defects(shape, recipe, kinds.pop(), (lo, hi), second_defect_prob, rng)
        plans.append(ProductPlan(product_id, str(label), shape, defects))
    return plans


def run_conditions(plan: ProductPlan, product_number: int, run_index: int, seed: int, purpose: str = "kit"
                   ) -> RunConditions:
    """The conditions of one run of a planned product (the same draw :func:`render_plans` makes)."""
    return draw_run(plan.shape, _stream(seed, purpose, product_number, _RUN, run_index))


def render_plans(plans: list[ProductPlan], runs: int, seed: int, recipe: Recipe, purpose: str = "kit"
                 ) -> Iterator[SimulatedAcquisition]:
    """Render every run of every planned product (product layers computed once per product)."""
    if runs < 1:
        raise SimulatorError(f"each product needs at least one run, got {runs}")
    renderer = StripRenderer(recipe)
    for number, plan in enumerate(plans):
        layers = renderer.product_layers(plan.shape, list(plan.defects))
        for run_index in range(runs):
            run = run_conditions(plan, number, run_index, seed, purpose)
            acq = renderer.render_acquisition(plan.shape, layers, run)
            fields = AcquisitionFields(
                plan.product_id, run_index, plan.label,
                tuple(DefectFields(d.kind, d.vial, d.region, round(d.severity, 4)) for d in plan.defects),
            )
            yield SimulatedAcquisition(fields, acq.frames, acq.masks)


def make_kit(n_good: int, n_defective: int, runs: int = 10, seed: int = 0, recipe: Recipe | None = None,
             severity_range: tuple[float, float] = (0.05, 1.0)) -> Iterator[SimulatedAcquisition]:
    """A Knapp-style kit: n_good good and n_defective defective products x runs acquisitions."""
    rec = recipe or load_recipe()
    plans = plan_products(rec, n_good, n_defective, seed, "kit", severity_range)
    return render_plans(plans, runs, seed, rec, "kit")


def make_train_set(n_products: int, runs: int = 10, seed: int = 0, recipe: Recipe | None = None
                   ) -> Iterator[SimulatedAcquisition]:
    """A training set: good products only (the generator learns what good looks like)."""
    rec = recipe or load_recipe()
    plans = plan_products(rec, n_products, 0, seed, "train")
    return render_plans(plans, runs, seed, rec, "train")


def write_dataset(out: str | Path, acquisitions: Iterator[SimulatedAcquisition], recipe: Recipe, seed: int,
                  generator_params: dict[str, object]) -> DatasetHeader:
    """Stream acquisitions into a dataset folder (manifest grows as each one is written)."""
    params = {"name": GENERATOR_NAME, "version": GENERATOR_VERSION, **generator_params}
    with DatasetWriter(out, recipe, seed, params) as writer:
        for acq in acquisitions:
            writer.add(acq.fields, acq.frames, acq.masks)
    return writer.close()
