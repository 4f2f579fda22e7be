"""Kits: deterministic by seed, products keep their defects across runs, labels are right."""
from __future__ import annotations

import numpy as np
import pytest

from vialguard.errors import SimulatorError
from vialguard.simulator.kit import make_kit, make_train_set, plan_products, render_plans, run_conditions
from vialguard.simulator.handling import pose_matrix

from tests.unit.simulator_support import RECIPE


def _one_defective_kit(seed: int, runs: int = 1) -> list:
    return list(make_kit(0, 1, runs=runs, seed=seed))


def test_same_seed_gives_identical_frames_and_masks() -> None:
    first, second = _one_defective_kit(11), _one_defective_kit(11)
    assert first[0].fields == second[0].fields
    assert first[0].frames.tobytes() == second[0].frames.tobytes()
    assert all(np.array_equal(a, b) for a, b in zip(first[0].masks, second[0].masks))


def test_different_seed_gives_different_frames() -> None:
    a, b = _one_defective_kit(11)[0], _one_defective_kit(12)[0]
    assert a.frames.tobytes() != b.frames.tobytes()


def test_a_product_keeps_its_defect_across_runs_while_the_images_change() -> None:
    (plan,) = plan_products(RECIPE, 0, 1, seed=4)
    acquisitions = list(render_plans([plan], runs=2, seed=4, recipe=RECIPE))
    assert acquisitions[0].fields.defects == acquisitions[1].fields.defects
    assert not np.array_equal(acquisitions[0].frames, acquisitions[1].frames)
    for run_index, acq in enumerate(acquisitions):
        matrix = pose_matrix(RECIPE, run_conditions(plan, 0, run_index, seed=4))
        for spec, mask in zip(plan.defects, acq.masks):
            ys, xs = np.nonzero(mask)
            expected = matrix @ np.array([spec.x, spec.y, 1.0])
            # the mask follows the vial: its centre is the defect's product position in this run's pose
            assert abs(xs.mean() - expected[0]) < 6 and abs(ys.mean() - expected[1]) < 6


def test_kit_has_the_asked_labels_and_each_defective_product_one_or_two_defects() -> None:
    plans = plan_products(RECIPE, 3, 4, seed=2)
    assert sorted(p.label for p in plans) == ["defective"] * 4 + ["good"] * 3
    assert len({p.product_id for p in plans}) == 7
    for p in plans:
        assert (len(p.defects) == 0) if p.label == "good" else (1 <= len(p.defects) <= 2)


def test_training_products_are_good_and_differ_from_the_kit_products_of_the_same_seed() -> None:
    train = plan_products(RECIPE, 2, 0, seed=2, purpose="train")
    kit = plan_products(RECIPE, 2, 0, seed=2, purpose="kit")
    assert all(p.label == "good" and not p.defects for p in train)
    assert train[0].shape.vials[0].fill_level != kit[0].shape.vials[0].fill_level
    (acq,) = list(make_train_set(1, runs=1, seed=2))
    assert acq.fields.label == "good" and acq.masks == []


@pytest.mark.parametrize("good,defective,runs", [(0, 0, 1), (-1, 2, 1), (1, 0, 0)])
def test_impossible_kit_sizes_are_refused(good: int, defective: int, runs: int) -> None:
    with pytest.raises(SimulatorError):
        list(make_kit(good, defective, runs=runs, seed=0))
