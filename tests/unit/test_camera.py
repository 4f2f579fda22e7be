"""The simulated camera speaks the proto the preprocessor decodes, and reports deadline misses."""
from __future__ import annotations

import threading
import time
from concurrent import futures

import grpc
import numpy as np
import pytest

from preprocessor.decode import decode_frame, decode_inspected
from preprocessor.validate import check_identity
from vialguard.recipe import load_recipe
from vialguard.v1 import inspection_pb2 as pb
from vialguard.v1 import inspection_pb2_grpc as pb_grpc
from vialguard_stack.camera import (
    FrameEncoding,
    FrameSelection,
    Shot,
    SimulatedCamera,
    acquisition_of,
)

RECIPE = load_recipe()


@pytest.fixture(scope="module")
def shot() -> Shot:
    rng = np.random.default_rng(7)
    n, h, w = RECIPE.frames_per_acquisition, RECIPE.frame_height, RECIPE.frame_width
    frames = rng.integers(0, 256, size=(n, h, w), dtype=np.uint8)
    frames[:, :, :8] = np.arange(n, dtype=np.uint8)[:, None, None]  # each frame knows its index
    return Shot("acq-0001", "product-07", 3, frames, "good")


@pytest.mark.parametrize("encoding", list(FrameEncoding))
def test_frames_decode_bit_for_bit_with_the_preprocessors_decoder(encoding: FrameEncoding, shot: Shot) -> None:
    frame = acquisition_of(shot, RECIPE, encoding).frames[1]
    assert frame.index == 7 and frame.pixel_format == pb.MONO8 and frame.camera_timestamp_ns > 0
    assert frame.encoding == (pb.PNG if encoding is FrameEncoding.PNG else pb.RAW)
    np.testing.assert_array_equal(decode_frame(frame, RECIPE), shot.frames[7])


@pytest.mark.parametrize("selection, expected", [
    (FrameSelection.INSPECTED, list(RECIPE.inspected_frames)),
    (FrameSelection.ALL, list(range(RECIPE.frames_per_acquisition))),
])
def test_an_acquisition_carries_the_selected_frames_and_passes_the_servers_checks(
        selection: FrameSelection, expected: list[int], shot: Shot) -> None:
    request = acquisition_of(shot, RECIPE, FrameEncoding.RAW, selection)
    assert [f.index for f in request.frames] == expected
    assert (request.acquisition_id, request.product_id, request.run_index) == ("acq-0001", "product-07", 3)
    check_identity(request, RECIPE)
    decoded = decode_inspected(request.frames, RECIPE)
    for pixels, index in zip(decoded, RECIPE.inspected_frames):
        np.testing.assert_array_equal(pixels, shot.frames[index])


def test_the_camera_refuses_frames_of_another_bit_depth_or_count_than_the_recipes(shot: Shot) -> None:
    with pytest.raises(ValueError, match="MONO8"):
        acquisition_of(Shot("a", "p", 0, shot.frames.astype(np.uint16)), RECIPE, FrameEncoding.RAW)
    with pytest.raises(ValueError, match="frames"):
        acquisition_of(Shot("a", "p", 0, shot.frames[:3]), RECIPE)


class _FakePreprocessor(pb_grpc.InspectionServicer):
    """Decodes like the real one; slow on the first call of ids 'slow*', refuses ids 'refuse*'."""

    def __init__(self) -> None:
        self.decided: dict[str, pb.Verdict] = {}
        self.lock = threading.Lock()

    def Inspect(self, request: pb.Acquisition, context: grpc.ServicerContext) -> pb.Verdict:
        try:
            decode_inspected(request.frames, RECIPE)
        except Exception as exc:  # noqa: BLE001 - the real server maps AcquisitionError the same way
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(exc))
        if request.acquisition_id.startswith("refuse"):
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, "frame 0: declared 1x1 (check the camera ROI)")
        with self.lock:
            known = self.decided.get(request.acquisition_id)
        if known is not None:
            replay = pb.Verdict()
            replay.CopyFrom(known)
            replay.replayed = True
            return replay
        verdict = pb.Verdict(acquisition_id=request.acquisition_id, product_id=request.product_id,
                             run_index=request.run_index, decision=pb.ACCEPT, model_version=1)
        with self.lock:
            self.decided[request.acquisition_id] = verdict
        if request.acquisition_id.startswith("slow"):
            time.sleep(0.4)
        return verdict


@pytest.fixture(scope="module")
def target():
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4),
                         options=[("grpc.max_receive_message_length", 64 * 1024 * 1024)])
    pb_grpc.add_InspectionServicer_to_server(_FakePreprocessor(), server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    yield f"127.0.0.1:{port}"
    server.stop(grace=None)


def test_a_verdict_within_the_deadline_is_not_a_miss(target: str, shot: Shot) -> None:
    with SimulatedCamera(target, RECIPE, deadline_ms=5000) as camera:
        result = camera.push(shot)
    assert result.status == "OK" and not result.deadline_missed and not result.late_verdict
    assert result.verdict.acquisition_id == shot.acquisition_id
    assert 0 < result.latency_ms < 5000 and result.encode_ms > 0


def test_a_late_verdict_is_reported_as_a_miss_and_then_fetched(target: str, shot: Shot) -> None:
    slow = Shot("slow-0001", shot.product_id, 0, shot.frames, "good")
    with SimulatedCamera(target, RECIPE, encoding=FrameEncoding.RAW, deadline_ms=100) as camera:
        result = camera.push(slow)
    assert result.status == "DEADLINE_EXCEEDED" and result.deadline_missed
    assert result.late_verdict and result.verdict is not None and result.verdict.replayed
    assert result.latency_ms >= 100


def test_a_refused_acquisition_reports_the_servers_message_and_no_verdict(target: str, shot: Shot) -> None:
    refused = Shot("refuse-0001", shot.product_id, 0, shot.frames, "good")
    with SimulatedCamera(target, RECIPE, encoding=FrameEncoding.RAW, deadline_ms=5000) as camera:
        result = camera.push(refused)
    assert result.status == "INVALID_ARGUMENT" and "camera ROI" in result.message
    assert result.verdict is None and not result.deadline_missed and not result.late_verdict


def test_pacing_sends_one_acquisition_per_slot(target: str, shot: Shot) -> None:
    shots = [Shot(f"paced-{i}", shot.product_id, i, shot.frames, "good") for i in range(3)]
    with SimulatedCamera(target, RECIPE, encoding=FrameEncoding.RAW, deadline_ms=5000, pace_ms=150) as camera:
        started = time.monotonic()
        results = list(camera.run(shots))
        elapsed = time.monotonic() - started
    assert [r.status for r in results] == ["OK"] * 3
    assert elapsed >= 0.3  # two full slots between three shots
