"""A simulated camera: pushes acquisitions to the preprocessor the way the line's camera does.

One gRPC Inspect per acquisition, with a per-call deadline (the line's 500 ms
slot by default), either every frame of the sequence or only the inspected ones,
MONO8 as PNG or RAW. Optional pacing sends one acquisition per slot, like the
rotating machine; without it the camera sends as fast as verdicts come back.

A verdict later than the deadline is a *miss* on the line: the strip left the
station without one. The camera reports each miss, and can then fetch the verdict
that the stack still produced (a repeat of the same acquisition_id is answered
with the stored verdict, `replayed = true`), so an accuracy figure still counts
every acquisition while the latency figure keeps the miss.
"""
from __future__ import annotations

import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from enum import Enum

import grpc
import numpy as np

from preprocessor.encode import build_acquisition
from vialguard.recipe import Recipe
from vialguard.v1 import inspection_pb2 as pb
from vialguard.v1 import inspection_pb2_grpc as pb_grpc

LINE_SLOT_MS = 500.0
MAX_MESSAGE_BYTES = 64 * 1024 * 1024  # 16 raw MONO16 frames of 1280x1024 fit, with room
LATE_FETCH_TIMEOUT_S = 30.0
LATE_FETCH_ATTEMPTS = 5
LATE_FETCH_PAUSE_S = 0.2


class FrameEncoding(str, Enum):
    PNG = "png"
    RAW = "raw"


class FrameSelection(str, Enum):
    INSPECTED = "inspected"  # only the recipe's inspected frames (1st, 8th, 16th)
    ALL = "all"              # the whole sequence, as a camera that does not know the recipe


@dataclass(frozen=True)
class Shot:
    """One acquisition as the camera holds it: ids, the ground truth, and the sensor's frames."""

    acquisition_id: str
    product_id: str
    run_index: int
    frames: np.ndarray           # [frames_per_acquisition, height, width], uint8 for a MONO8 recipe
    label: str | None = None     # "good" / "defective" when known (simulated kit)


@dataclass(frozen=True)
class PushResult:
    shot: Shot
    verdict: pb.Verdict | None   # None only when no verdict could be had at all
    status: str                  # "OK" or the gRPC status code name of the first call
    message: str                 # the server's message when status is not OK
    latency_ms: float            # round trip of the first call, as the line sees it
    encode_ms: float
    deadline_missed: bool
    late_verdict: bool           # the verdict was fetched after a miss (replayed)


_WIRE = {FrameEncoding.PNG: pb.PNG, FrameEncoding.RAW: pb.RAW}


def acquisition_of(shot: Shot, recipe: Recipe, encoding: FrameEncoding = FrameEncoding.PNG,
                   selection: FrameSelection = FrameSelection.INSPECTED) -> pb.Acquisition:
    """The Inspect request for one shot, built by preprocessor.encode (the one encoder the server mirrors)."""
    if shot.frames.shape[0] != recipe.frames_per_acquisition:
        raise ValueError(f"{shot.acquisition_id}: {shot.frames.shape[0]} frames, recipe '{recipe.id}' "
                         f"has {recipe.frames_per_acquisition} per acquisition")
    sensor_dtype = np.uint8 if recipe.bit_depth == 8 else np.uint16
    if shot.frames.dtype != sensor_dtype:
        raise ValueError(f"{shot.acquisition_id}: recipe '{recipe.id}' is MONO{recipe.bit_depth}, the camera "
                         f"holds {shot.frames.dtype} frames")
    indices = (list(recipe.inspected_frames) if selection is FrameSelection.INSPECTED
               else list(range(recipe.frames_per_acquisition)))
    now_ns = time.time_ns()
    return build_acquisition(shot.acquisition_id, shot.product_id, shot.run_index, recipe.id,
                             [shot.frames[i] for i in indices], indices, _WIRE[encoding],
                             acquired_at_unix_ms=now_ns // 1_000_000, camera_timestamp_ns=now_ns)


class SimulatedCamera:
    """Sends shots to one preprocessor; `with SimulatedCamera(...) as cam: cam.run(shots)`."""

    def __init__(self, target: str, recipe: Recipe, encoding: FrameEncoding = FrameEncoding.PNG,
                 selection: FrameSelection = FrameSelection.INSPECTED, deadline_ms: float = LINE_SLOT_MS,
                 pace_ms: float = 0.0, fetch_late_verdicts: bool = True) -> None:
        if deadline_ms <= 0 or pace_ms < 0:
            raise ValueError(f"deadline_ms must be > 0 and pace_ms >= 0, got {deadline_ms}, {pace_ms}")
        self.recipe = recipe
        self.encoding = encoding
        self.selection = selection
        self.deadline_s = deadline_ms / 1000.0
        self.pace_s = pace_ms / 1000.0
        self.fetch_late_verdicts = fetch_late_verdicts
        self._channel = grpc.insecure_channel(target, options=[
            ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
            ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
        ])
        self._stub = pb_grpc.InspectionStub(self._channel)

    def push(self, shot: Shot) -> PushResult:
        """One Inspect call under the deadline; on a miss, optionally fetch the stored verdict."""
        t0 = time.perf_counter()
        request = acquisition_of(shot, self.recipe, self.encoding, self.selection)
        encode_ms = (time.perf_counter() - t0) * 1000.0
        t1 = time.perf_counter()
        try:
            verdict = self._stub.Inspect(request, timeout=self.deadline_s)
            latency_ms = (time.perf_counter() - t1) * 1000.0
            return PushResult(shot, verdict, "OK", "", latency_ms, encode_ms, False, False)
        except grpc.RpcError as exc:
            latency_ms = (time.perf_counter() - t1) * 1000.0
            code, message = exc.code(), exc.details() or ""
        missed = code == grpc.StatusCode.DEADLINE_EXCEEDED
        late = self._fetch_late(request) if missed and self.fetch_late_verdicts else None
        return PushResult(shot, late, code.name, message, latency_ms, encode_ms, missed, late is not None)

    def _fetch_late(self, request: pb.Acquisition) -> pb.Verdict | None:
        """Repeat the same acquisition_id without the line's deadline: the stored verdict comes back.

        When the first call gave up before its scores were queued, the repeat may join it and
        hear UNAVAILABLE ("retry"), or find every inference slot busy (RESOURCE_EXHAUSTED):
        both say "same id, again", which the camera does a few times, a moment apart.
        """
        for _attempt in range(LATE_FETCH_ATTEMPTS):
            try:
                return self._stub.Inspect(request, timeout=LATE_FETCH_TIMEOUT_S)
            except grpc.RpcError as exc:
                if exc.code() not in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.RESOURCE_EXHAUSTED):
                    return None
                time.sleep(LATE_FETCH_PAUSE_S)
        return None

    def run(self, shots: Iterable[Shot]) -> Iterator[PushResult]:
        """Push every shot in order; with pacing, start one per slot like the machine turns."""
        next_start = time.monotonic()
        for shot in shots:
            if self.pace_s:
                time.sleep(max(0.0, next_start - time.monotonic()))
                next_start = max(next_start + self.pace_s, time.monotonic())
            yield self.push(shot)

    def close(self) -> None:
        self._channel.close()

    def __enter__(self) -> "SimulatedCamera":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
