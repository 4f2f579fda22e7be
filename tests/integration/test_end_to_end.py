"""End to end with the committed model: camera -> gRPC -> preprocessor -> Triton -> Redis
-> aggregator -> verdict, every part real (redis-server, tritonserver, both services as
processes), on a simulated Knapp-style kit that was used neither for training nor for
calibration.

What the line needs from the whole stack, checked here:
- every acquisition gets exactly one verdict (stream, audit), a retry replays it;
- the verdict is the one the model version's own thresholds give to its own scores:
  recomputed offline (ONNX Runtime on the patches cut by vialguard.patching, the
  version's calibration, eq. 13), decision by decision, score by score (1e-4);
- defective strips are rejected and good ones accepted at the rates the version's
  report claims for strips (within the sampling error of a small kit).
All of it for the committed version as it is (float patches: the client scales the
camera's pixels) and for its pixel-input copy (uint8 patches scaled in the graph,
trainer.onnx_pixel_input, in a scratch repository).
"""
from __future__ import annotations

import json
import math
import sqlite3
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
import redis

from tests.integration.triton_support import require_local_stack
from trainer.onnx_pixel_input import pixel_copy_repository
from vialguard.decision import decide_strip
from vialguard.inspector_io import (INPUT_PATCHES, LOCAL_SCORE_FILENAME, ONNX_FILENAME, OUTPUT_SCORE,
                                    REPORT_JSON_FILENAME)
from vialguard.local_score import LocalScoreModel
from vialguard.messages import VERDICTS_STREAM
from vialguard.model_repository import latest_version, load_version_calibration, version_dir, version_input_datatype
from vialguard.patching import acquisition_labels, cut_acquisition, cut_acquisition_pixels, select_inspected
from vialguard.recipe import load_recipe
from vialguard.v1 import inspection_pb2 as pb
from vialguard_stack.camera import FrameEncoding, SimulatedCamera
from vialguard_stack.kit_source import HELD_OUT_SEED, simulated_shots
from vialguard_stack.local_stack import REPO_ROOT, StackSettings, local_stack

pytestmark = pytest.mark.integration

REPOSITORY = REPO_ROOT / "model_repository"
RECIPE = load_recipe()
GOOD, DEFECTIVE, RUNS = 2, 2, 10


def _served_kinds() -> list[str]:
    """The committed version, and its pixel-input copy when it still takes float patches."""
    newest = latest_version(REPOSITORY)
    float_input = newest is not None and version_input_datatype(REPOSITORY, newest) == "FP32"
    return ["committed", "pixel-input"] if float_input else ["committed"]


@pytest.fixture(scope="module", params=_served_kinds())
def served(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, int]:
    """(repository, version) the stack serves: the newest committed version, or its pixel-input copy."""
    newest = latest_version(REPOSITORY)
    assert newest is not None, "no model version is committed in model_repository/inspector (make train-cpu)"
    if request.param == "committed":
        return REPOSITORY, newest
    return pixel_copy_repository(REPOSITORY, newest, tmp_path_factory.mktemp("pixel-input"))


@pytest.fixture(scope="module")
def repository(served: tuple[Path, int]) -> Path:
    return served[0]


@pytest.fixture(scope="module")
def version(served: tuple[Path, int]) -> int:
    return served[1]


@pytest.fixture(scope="module")
def kit_run(repository: Path, version: int, tmp_path_factory: pytest.TempPathFactory) -> dict:
    """Push the kit through the running stack once; the tests below read what came back."""
    require_local_stack()
    run_dir = tmp_path_factory.mktemp("e2e") / "run"
    shots = list(simulated_shots(RECIPE, GOOD, DEFECTIVE, RUNS, seed=HELD_OUT_SEED + 7))
    with local_stack(StackSettings(run_dir=run_dir, repository=repository, version=version)) as stack:
        camera = SimulatedCamera(stack.preprocessor_target, RECIPE, encoding=FrameEncoding.RAW, deadline_ms=5_000)
        results = list(camera.run(shots))
        retry = camera.push(shots[0])
        client = redis.Redis.from_url(stack.redis_url)
        streamed = [fields[b"acquisition_id"].decode() for _, fields in client.xrange(VERDICTS_STREAM)]
        client.close()
    audit = sqlite3.connect(run_dir / "audit" / "verdicts.sqlite3")
    audit_ids = [row[0] for row in audit.execute("SELECT acquisition_id FROM verdicts")]
    audit.close()
    return {"shots": shots, "results": results, "retry": retry, "streamed": streamed, "audit_ids": audit_ids}


def test_every_acquisition_gets_exactly_one_verdict(kit_run: dict) -> None:
    ids = [s.acquisition_id for s in kit_run["shots"]]
    assert [r.status for r in kit_run["results"]] == ["OK"] * len(ids)
    assert [r.verdict.acquisition_id for r in kit_run["results"]] == ids
    assert sorted(kit_run["audit_ids"]) == sorted(ids)
    assert sorted(kit_run["streamed"]) == sorted(ids)


def test_a_retry_replays_the_same_verdict(kit_run: dict) -> None:
    first, retry = kit_run["results"][0].verdict, kit_run["retry"].verdict
    assert retry.replayed and not first.replayed
    assert retry.decision == first.decision and retry.strip_score == first.strip_score


def test_verdicts_are_the_versions_own_thresholds_on_its_own_scores(kit_run: dict, repository: Path,
                                                                   version: int) -> None:
    calibration = load_version_calibration(repository, version)
    # the trainer's side: vialguard.patching's patches into the committed graph, as it takes them (camera
    # pixels for a pixel-input graph, which the exporter proved bit-identical to its float graph)
    session = ort.InferenceSession(str(version_dir(REPOSITORY, latest_version(REPOSITORY) or 0) / ONNX_FILENAME),
                                   providers=["CPUExecutionProvider"])
    takes_pixels = session.get_inputs()[0].type != "tensor(float)"
    regions = [label.region for label in acquisition_labels(RECIPE)]
    local_path = version_dir(repository, version) / LOCAL_SCORE_FILENAME
    # the largest per-pixel scale alone: stricter than LocalScoreModel.score_unit (which also multiplies
    # by a version 8 row tail, < 1), kept so that this check reads as strictly as before version 8
    unit = float(LocalScoreModel.from_bytes(local_path.read_bytes()).scale.max()) if local_path.is_file() else 1.0
    for shot, result in zip(kit_run["shots"], kit_run["results"]):
        verdict = result.verdict
        assert verdict.model_version == version
        inspected = select_inspected(shot.frames, RECIPE)
        patches = cut_acquisition_pixels(inspected, RECIPE) if takes_pixels else \
            cut_acquisition(inspected, RECIPE, calibration.patch_size)
        scores = session.run([OUTPUT_SCORE], {INPUT_PATCHES: patches})[0].reshape(-1)
        served = np.array([p.score for p in verdict.patches])
        # invariant 2 in units of the one SSIM: a local score is the SSIM map over a good-patch spread
        assert np.max(np.abs(served - scores)) * unit <= 1e-4, shot.acquisition_id
        expected = decide_strip(scores, regions, calibration.serving_thresholds)
        assert pb.Decision.Name(verdict.decision) == expected.decision.value, shot.acquisition_id
        assert [p.threshold for p in verdict.patches] == pytest.approx(expected.thresholds.tolist())


def test_rejection_rates_agree_with_the_versions_report(kit_run: dict, repository: Path, version: int) -> None:
    report = json.loads((version_dir(repository, version) / REPORT_JSON_FILENAME).read_text())
    strip = report["serving"]["strip"]  # strips judged with the thresholds the line serves
    good = [r for r in kit_run["results"] if r.shot.label == "good"]
    bad = [r for r in kit_run["results"] if r.shot.label == "defective"]
    accepted = sum(pb.Decision.Name(r.verdict.decision) == "ACCEPT" for r in good) / len(good)
    rejected = sum(pb.Decision.Name(r.verdict.decision) == "REJECT" for r in bad) / len(bad)
    for observed, claimed, n in ((accepted, strip["good_accepted_rate"], len(good)),
                                 (rejected, strip["defects_rejected_rate"], len(bad))):
        # Runs of one product are correlated: count products, not acquisitions, for the error.
        sigma = math.sqrt(max(claimed * (1 - claimed), 0.05) / (n / RUNS))
        assert abs(observed - claimed) <= 3 * sigma, (observed, claimed)
