"""The segmentation head: synthetic defects, its training step, and a version that serves its map."""
from __future__ import annotations

import json
import os
from dataclasses import replace
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np
import onnxruntime as ort

from tests.unit.synthetic_scores import synthetic_kit
from trainer import export
from trainer.calibrate import calibrate
from trainer.config import get_profile
from trainer.evaluate import evaluate
from trainer.metrics import auroc
from trainer.networks.generator import build_generator
from trainer.networks.segmenter import attach_segmenter, build_segmenter, segmenter_of
from trainer.report import write_report
from vialguard import inspector_io as io
from vialguard.local_score import SCORE_LOCAL_FUSED, LocalScoreModel, PatchLayout, local_scores
from vialguard.recipe import load_recipe

RECIPE = load_recipe()
PROFILE = get_profile("tiny")
DIGEST = "sha256:d"


def test_synthetic_defects_change_the_patch_only_under_their_mask_and_mark_what_changed() -> None:
    import tensorflow as tf

    from trainer.synthetic_defects import synthetic_defects

    x = tf.fill([64, 64, 64, 1], 0.6)
    out = synthetic_defects(x, tf.random.Generator.from_seed(3), probability=0.5)
    images, mask = out.images.numpy(), out.mask.numpy()
    changed = np.abs(images - 0.6) > 1e-6
    assert mask.shape == images.shape and set(np.unique(mask)) <= {0.0, 1.0}
    assert not (mask.astype(bool) & ~changed).any(), "the mask marks a pixel that did not change"
    assert 0.0 <= images.min() and images.max() <= 1.0
    touched = mask.reshape(64, -1).any(axis=1)
    assert 15 <= touched.sum() <= 50, f"about half the patches should carry a defect, got {touched.sum()} of 64"
    assert (images < 0.6 - 1e-6).any() and (images > 0.6 + 1e-6).any(), "both darker and brighter defects occur"
    small = mask.reshape(64, -1).sum(axis=1)
    assert small[touched].min() < 0.05 * 64 * 64, "some defects must be small, as real particles are"


def test_the_head_learns_synthetic_defects_on_a_frozen_generator() -> None:
    import keras
    import tensorflow as tf

    from trainer.segmenter_train import SegmenterConfig, SegmenterTraining

    keras.utils.set_random_seed(0)
    generator = build_generator(PROFILE)
    frozen = [w.copy() for w in generator.get_weights()]
    segmenter = build_segmenter(PROFILE)
    model = SegmenterTraining(generator, segmenter, SegmenterConfig(learning_rate=5e-3, defect_probability=1.0))
    model.compile(optimizer=keras.optimizers.Adam(5e-3), jit_compile=False)
    rng = np.random.default_rng(0)
    clean = rng.uniform(0.49, 0.51, (16, 32, 32, 1)).astype(np.float32)  # flat: every defect shows
    data = tf.data.Dataset.from_tensors(clean).repeat()
    images, x_hat, mask = model._batch(tf.constant(np.concatenate([clean] * 4)), augment=False)
    truth = mask.numpy().reshape(-1) > 0

    def pixel_auroc() -> float:
        return auroc(segmenter([images, x_hat]).numpy().reshape(-1), truth)

    first_loss, first_auroc = model.evaluate(data, steps=4, verbose=0, return_dict=True)["seg_loss"], pixel_auroc()
    model.fit(data, epochs=1, steps_per_epoch=200, verbose=0)
    last_loss, last_auroc = model.evaluate(data, steps=4, verbose=0, return_dict=True)["seg_loss"], pixel_auroc()
    assert last_loss < 0.92 * first_loss, f"the loss did not fall: {first_loss:.4f} -> {last_loss:.4f}"
    assert last_auroc > first_auroc + 0.2, f"defect pixels not told apart: {first_auroc:.3f} -> {last_auroc:.3f}"
    for before, after in zip(frozen, generator.get_weights()):
        np.testing.assert_array_equal(before, after)


def test_a_version_with_a_head_serves_the_local_score_of_its_logit_map(tmp_path: Path) -> None:
    import keras

    keras.utils.set_random_seed(0)
    generator = build_generator(PROFILE)
    assert segmenter_of(generator) is None
    combined = attach_segmenter(generator, build_segmenter(PROFILE))
    head = segmenter_of(combined)
    assert head is not None
    combined.save(tmp_path / "g.keras")
    combined = keras.models.load_model(tmp_path / "g.keras", compile=False)
    layout = PatchLayout.from_recipe(RECIPE)
    side = PROFILE.patch_size
    rng = np.random.default_rng(0)
    local = LocalScoreModel(layout, True, rng.uniform(-0.1, 0.1, (4, side, side)).astype(np.float32),
                            rng.uniform(0.5, 1.0, (4, side, side)).astype(np.float32))
    kit = synthetic_kit(n_good=4, n_defective=4, runs=10, seed=1)
    cal = replace(calibrate(kit, profile=PROFILE.name, patch_size=PROFILE.patch_size, recipe=RECIPE,
                            training_data_digest=DIGEST), score=SCORE_LOCAL_FUSED)
    files = write_report(evaluate(kit, cal), tmp_path / "report")
    version = export.export_version(combined, PROFILE, cal, files, tmp_path / "repo", RECIPE, DIGEST, local=local)
    vdir = tmp_path / "repo" / io.MODEL_NAME / str(version)
    assert json.loads((vdir / export.MANIFEST_FILENAME).read_text())["anomaly_map"] == "segmenter"

    patches = rng.uniform(0.2, 0.8, (layout.per_acquisition, side, side, 1)).astype(np.float32)
    session = ort.InferenceSession(str(vdir / io.ONNX_FILENAME), providers=["CPUExecutionProvider"])
    score, phi = session.run([io.OUTPUT_SCORE, io.OUTPUT_PHI], {io.INPUT_PATCHES: patches})
    enc, dec = combined.get_layer("encoder"), combined.get_layer("decoder")
    x_hat = dec(enc(patches)).numpy()
    logits = segmenter_of(combined)([patches, x_hat]).numpy()[..., 0]
    np.testing.assert_allclose(score, local_scores(logits, local), atol=1e-4 / float(local.scale.max()) * 10)
    from vialguard.ssim import ssim_map

    np.testing.assert_allclose(phi, 1.0 - ssim_map(patches, x_hat).mean(axis=(1, 2)), atol=1e-4)


def _interior_share(stroke_share: float) -> float:
    """Share of masked pixels whose 4 neighbours are masked too (thin shapes have few)."""
    import tensorflow as tf

    from trainer.synthetic_defects import synthetic_defects

    x = tf.fill([32, 256, 256, 1], 0.5)
    out = synthetic_defects(x, tf.random.Generator.from_seed(1), probability=1.0, stroke_share=stroke_share)
    mask = out.mask.numpy()[..., 0].astype(bool)
    eroded = mask[:, 1:-1, 1:-1] & mask[:, :-2, 1:-1] & mask[:, 2:, 1:-1] & mask[:, 1:-1, :-2] & mask[:, 1:-1, 2:]
    return float(eroded.sum() / max(mask.sum(), 1))


def test_synthetic_strokes_are_thin_and_blobs_are_not() -> None:
    strokes, blobs = _interior_share(1.0), _interior_share(0.0)
    assert strokes < 0.6 * blobs, f"strokes should be thin: interior share {strokes:.2f} vs blobs {blobs:.2f}"
