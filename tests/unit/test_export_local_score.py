"""A version that serves the local score: its statistics travel in the version and in the graph."""
from __future__ import annotations

import json
import os
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np
import onnxruntime as ort
import pytest
from dataclasses import replace

from tests.unit.synthetic_scores import synthetic_kit
from trainer import export
from trainer.calibrate import calibrate
from trainer.config import get_profile
from trainer.evaluate import evaluate
from trainer.networks.generator import build_generator
from trainer.report import write_report
from vialguard import inspector_io as io
from vialguard.errors import ModelVersionError
from vialguard.local_score import SCORE_LOCAL_FUSED, LocalScoreModel, PatchLayout, local_scores
from vialguard.recipe import load_recipe
from vialguard.ssim import ssim_map

RECIPE = load_recipe()
PROFILE = get_profile("tiny")
DIGEST = "sha256:d"


def test_a_local_score_version_serves_what_the_numpy_reference_computes(tmp_path: Path) -> None:
    import keras

    keras.utils.set_random_seed(0)
    generator = build_generator(PROFILE)
    layout = PatchLayout.from_recipe(RECIPE)
    side = PROFILE.patch_size - 10
    rng = np.random.default_rng(0)
    local = LocalScoreModel(layout, True, rng.uniform(0, 0.1, (4, side, side)).astype(np.float32),
                            rng.uniform(0.05, 0.1, (4, side, side)).astype(np.float32))
    kit = synthetic_kit(n_good=4, n_defective=4, runs=10, seed=1)
    cal = replace(calibrate(kit, profile=PROFILE.name, patch_size=PROFILE.patch_size, recipe=RECIPE,
                            training_data_digest=DIGEST), score=SCORE_LOCAL_FUSED)
    files = write_report(evaluate(kit, cal), tmp_path / "report")
    with pytest.raises(ModelVersionError, match="serves the 'local-fused' score"):
        export.export_version(generator, PROFILE, cal, files, tmp_path / "repo", RECIPE, DIGEST)
    version = export.export_version(generator, PROFILE, cal, files, tmp_path / "repo", RECIPE, DIGEST, local=local)
    vdir = tmp_path / "repo" / io.MODEL_NAME / str(version)
    manifest = json.loads((vdir / export.MANIFEST_FILENAME).read_text())
    assert manifest["score"] == SCORE_LOCAL_FUSED and manifest["patch_layout"] == layout.as_dict()
    assert manifest["local_score"] == {"smooth_sigma": 0.0, "smooth_after_fusion": False, "fuse_frames": True,
                                       "row_scale": False}
    assert manifest["strip_reference"] is None  # this version scores the 1 - SSIM map
    stored = LocalScoreModel.from_bytes((vdir / io.LOCAL_SCORE_FILENAME).read_bytes())
    np.testing.assert_array_equal(stored.scale, local.scale)

    patches = rng.uniform(0.2, 0.8, (layout.per_acquisition, PROFILE.patch_size, PROFILE.patch_size, 1))
    patches = patches.astype(np.float32)
    session = ort.InferenceSession(str(vdir / io.ONNX_FILENAME), providers=["CPUExecutionProvider"])
    score, phi = session.run([io.OUTPUT_SCORE, io.OUTPUT_PHI], {io.INPUT_PATCHES: patches})
    enc, dec = generator.get_layer("encoder"), generator.get_layer("decoder")
    x_hat = dec(enc(patches, training=False), training=False).numpy()
    reference = local_scores(1.0 - ssim_map(patches, x_hat), local)
    assert np.max(np.abs(score - reference)) * local.score_unit <= 1e-4  # the contract in SSIM units
    assert np.all(score.reshape(3, -1) == score.reshape(3, -1)[0])  # one fused score per vial and region
    assert phi.shape == (layout.per_acquisition,)
