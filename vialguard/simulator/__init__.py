"""Strip simulator: synthetic 16-frame acquisitions of a 5-vial BFS strip, with ground truth.

What it models. A back-lit, telecentric side view: a bright, nearly uniform
backlight seen through the strip. Plastic lets part of the light through, and
less where the line of sight grazes a wall, so walls show as dark outlines around
a mid-grey body. Each vial has a flat flag with a moulded mark (R0), a solid
twist-off cap, a thin hollow neck widening into the shoulder (R1), a body filled
with liquid up to a meniscus that shows as a dark band (R2), and a rounded bottom
(R3); where the parts lie comes from the recipe's region rectangles. While the
machine turns the strip the liquid sloshes: the meniscus rises, falls and tilts,
bubbles under it drift sideways and drops slide down the neck, from frame to
frame, as dark rings with clear centres (so the per-pixel max over the 16 frames
loses them and the min keeps them, like the real rank images). Defects sit on the
plastic and move only with the strip's pose.

Three time scales: a product (outline, fill level, plastic opacity, its defects)
is fixed for all its runs; a run changes pose (a few pixels, under a degree),
light (gain, offset, gentle gradient), sensor noise (read + shot) and the set of
bubbles and drops; frames change only the liquid and what floats in it.

What it is not. It is not optics: no refraction ray-tracing, no lens blur, no
specular glints, no colour, no label/print variation beyond one moulded mark, no
vial-to-vial webbing of the strip, and defects are simple shapes (particle clumps,
soft spots, strokes, textured burns, dents and plastic flash, stuck foam) graded by
one severity number. Use it to exercise the pipeline, to test that labels,
patching and decisions are wired correctly, and to compare models relative to
each other — not to set or validate production thresholds, which must be
calibrated on real product from the line.

Modules: ``strip`` (product shape from the recipe), ``handling`` (run pose, light,
noise, bubbles, drops, slosh), ``defects`` (the defect library), ``render``
(frames), ``kit`` (Knapp kits and training sets). Entry points:
:mod:`vialguard.simulator.kit` (``make_kit``, ``make_train_set``, ``write_dataset``)
and the command line ``python -m vialguard.simulator.cli`` (``kit``, ``train-set``,
``bench``). Same seed, same bytes (on the same numpy/OpenCV build).
"""
