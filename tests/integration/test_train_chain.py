"""The whole training chain, one command: simulate -> ingest -> train -> calibrate -> evaluate -> export.

Slow (a real GAN fit, ONNX export and its Runtime check, about 2-3 minutes on 2
cores), so outside the default run:
``.venv/bin/python -m pytest -m slow tests/integration/test_train_chain.py -q``.
"""
from __future__ import annotations

import json
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import pytest

pytestmark = pytest.mark.slow


def test_all_publishes_a_whole_version_calibrated_on_its_own_kit(tmp_path):
    from trainer.cli import main
    from trainer.shard_index import load_index
    from vialguard.inspector_io import CALIBRATION_FILENAME, ONNX_FILENAME
    from vialguard.model_repository import list_versions, load_version_calibration

    repo, work = tmp_path / "model_repository", tmp_path / "run"
    args = ["--log-level", "WARNING", "all", "--profile", "tiny", "--scale", "smoke", "--out", str(repo),
            "--workdir", str(work)]
    assert main(args) == 0
    assert list_versions(repo) == [1]
    version = repo / "inspector" / "1"
    assert (version / ONNX_FILENAME).stat().st_size > 0 and (version / CALIBRATION_FILENAME).is_file()
    calibration = load_version_calibration(repo, 1)
    train_index = load_index(work / "patches" / "train")
    assert calibration.training_data_digest == train_index.source_digest
    assert calibration.profile == "tiny" and calibration.patch_size == train_index.patch_size
    summary = json.loads((work / "run.json").read_text())
    assert summary["version"] == 1 and set(summary["seconds"]) == {
        "simulate", "ingest", "train", "calibrate", "evaluate", "export"}
