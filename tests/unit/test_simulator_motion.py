"""Handling moves bubbles and drops between frames; defects stay put, in both rank images."""
from __future__ import annotations

from dataclasses import replace

import numpy as np

from vialguard.patching import rank_images
from vialguard.simulator.defects import place_defect
from vialguard.simulator.handling import pose_matrix

from tests.unit.simulator_support import RECIPE, RENDERER, product, run_of

SHAPE = product(seed=8)
RUN = run_of(SHAPE, seed=3)


def _bubbles_run():
    """A run that surely has bubbles (the draw may give a vial none)."""
    seed = 3
    run = RUN
    while sum(not m.is_drop for m in run.movers) < 3:
        seed += 1
        run = run_of(SHAPE, seed)
    return run


def test_bubbles_and_drops_move_by_more_than_their_size_between_inspected_frames() -> None:
    run = _bubbles_run()
    acq = RENDERER.render_acquisition(SHAPE, RENDERER.product_layers(SHAPE, []), run, noise=False)
    first, middle = acq.states[RECIPE.inspected_frames[0]], acq.states[RECIPE.inspected_frames[1]]
    moved = [
        np.hypot(a.x - b.x, a.y - b.y) > min(a.rx, a.ry)
        for a, b in zip(first.blobs, middle.blobs)
        if a.vial == b.vial
    ]
    assert moved and np.mean(moved) > 0.8
    assert not np.array_equal(acq.frames[0], acq.frames[RECIPE.inspected_frames[1]])


def test_the_max_rank_image_loses_bubbles_while_a_stuck_particle_stays_in_both_rank_images() -> None:
    run = _bubbles_run()
    spec = place_defect("stuck_particle", 2, 2, 0.8, SHAPE, RECIPE, np.random.default_rng(1))
    layers = RENDERER.product_layers(SHAPE, [spec])
    with_movers = RENDERER.render_acquisition(SHAPE, layers, run, noise=False)
    still = RENDERER.render_acquisition(SHAPE, RENDERER.product_layers(SHAPE, []), replace(run, movers=[]), noise=False)
    low, high = (img.astype(np.float32) for img in rank_images(with_movers.frames))
    low_clean, high_clean = (img.astype(np.float32) for img in rank_images(still.frames))

    (mask,) = with_movers.masks
    assert np.mean(high_clean[mask] - high[mask]) > 15  # the particle darkens the max image...
    assert np.mean(low_clean[mask] - low[mask]) > 15  # ...and the min image

    matrix = pose_matrix(RECIPE, run)
    rings = np.zeros_like(mask)
    for blob in with_movers.states[0].blobs:
        x, y = matrix @ np.array([blob.x, blob.y, 1.0])
        yy, xx = np.ogrid[: RECIPE.frame_height, : RECIPE.frame_width]
        rho = np.hypot(xx - x, yy - y)
        rings |= (rho > 0.6 * blob.rx) & (rho < blob.rx) & ~mask
    frame0 = with_movers.frames[0].astype(np.float32)
    dark_in_frame = np.mean(high_clean[rings] - frame0[rings])
    dark_in_max = np.mean(high_clean[rings] - high[rings])
    assert dark_in_frame > 10  # the bubbles and drops of frame 0 are there to see...
    assert dark_in_max < 0.15 * dark_in_frame  # ...and gone from the max image
    assert np.mean(high_clean[rings] - low[rings]) > 0.8 * dark_in_frame  # but kept by the min image
