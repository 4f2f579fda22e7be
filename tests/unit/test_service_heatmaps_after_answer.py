"""A reject's heatmaps are kept after Inspect has answered, and GetHeatmaps waits for them.

The real InspectionService, with fakes around it: the inspector (Triton) and the
heatmap store (Redis) are stand-ins whose fetch the test holds or breaks, and
``exchange`` (the Redis streams to and from the aggregator) answers each queued
acquisition with a verdict the test chose. What is under test is the order of
things in the servicer: answer first, heatmaps after, readers waiting for them.
"""
from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import grpc
import numpy as np
import pytest
import redis

from preprocessor import exchange
from preprocessor import service as service_module
from preprocessor.config import PreprocessorConfig
from preprocessor.encode import build_acquisition
from preprocessor.service import InspectionService
from vialguard.inference import InferenceResult, InferenceUnavailable
from vialguard.messages import PatchVerdict, RunPolicyState, ScoresMessage, VerdictMessage
from vialguard.patching import to_unit_float
from vialguard.recipe import load_recipe
from vialguard.v1 import inspection_pb2 as pb

RECIPE = load_recipe()
OVER = (5, 42)  # the patches the test's aggregator finds over the threshold
WAIT_S = 5.0    # generous: only a servicer that waits for the fetch hits it
_RNG = np.random.default_rng(0)
FRAMES = [_RNG.integers(0, 256, (RECIPE.frame_height, RECIPE.frame_width), dtype=np.uint8)
          for _ in RECIPE.inspected_frames]


class FakeInspector:
    """Triton's stand-in: score = patch mean; ``heatmaps`` waits for ``gate`` (open unless a test closes it)."""

    def __init__(self) -> None:
        self.gate = threading.Event()
        self.gate.set()
        self.fetching = threading.Event()  # a heatmap fetch has started
        self.fail_with = ""                # set: the heatmap fetch raises InferenceUnavailable (Triton down)
        self.heatmap_calls: list[int] = []

    def patch_size(self) -> int:
        return RECIPE.patch_size

    def heatmaps_apart(self) -> bool:
        return True

    def infer(self, patches: np.ndarray, timeout_s: float, heatmaps: bool = False) -> InferenceResult:
        scores = to_unit_float(patches).mean(axis=(1, 2, 3)).astype(np.float32)
        return InferenceResult(scores=scores, heatmaps=None, model_name="inspector", model_version=7)

    def heatmaps(self, patches: np.ndarray, model_version: int, timeout_s: float) -> np.ndarray:
        self.fetching.set()
        self.heatmap_calls.append(len(patches))
        assert self.gate.wait(WAIT_S), "the test never opened the gate"
        if self.fail_with:
            raise InferenceUnavailable(self.fail_with)
        return to_unit_float(patches)


class FakeStore:
    """HeatmapStore's stand-in: a dict; ``down`` plays Redis unreachable for writes."""

    def __init__(self, *_args: object) -> None:
        self.kept: dict[str, tuple[dict[int, bytes], dict[int, bytes]]] = {}
        self.down = False

    def put(self, acquisition_id: str, pngs: dict[int, bytes], patch_pngs: dict[int, bytes]) -> None:
        if self.down:
            raise redis.ConnectionError("Connection refused")
        self.kept[acquisition_id] = (dict(pngs), dict(patch_pngs))

    def get_with_patches(self, acquisition_id: str) -> tuple[dict[int, bytes], dict[int, bytes]]:
        return self.kept.get(acquisition_id, ({}, {}))


class FakeExchange:
    """The Redis streams: every acquisition is claimed fresh; its verdict is decided by ``over``.

    ``hold`` (when cleared) keeps the verdict from Inspect, as when a screen hears of it by
    WatchVerdicts before the call that asked has read it.
    """

    Claim, ClaimLost, VerdictTimeout = exchange.Claim, exchange.ClaimLost, exchange.VerdictTimeout

    def __init__(self) -> None:
        self.over: dict[str, tuple[int, ...]] = {}
        self.queued: dict[str, ScoresMessage] = {}
        self.hold = threading.Event()
        self.hold.set()
        self.waiting = threading.Event()  # an Inspect is waiting for its verdict

    def claim(self, *_args: object) -> exchange.Claim:
        return exchange.Claim(stored_verdict=None, claimed=True)

    def release(self, *_args: object, **_kwargs: object) -> None:
        pass

    def enqueue(self, _client: object, message: ScoresMessage) -> bytes:
        self.queued[message.acquisition_id] = message
        return b"1-0"

    def wait_for_verdict(self, _client: object, acquisition_id: str, _deadline: object,
                         _watch_claim: bool = False) -> bytes:
        self.waiting.set()
        assert self.hold.wait(WAIT_S)
        scores = self.queued[acquisition_id]
        over = set(self.over.get(acquisition_id, ()))
        values = [p.score for p in scores.patches]
        return VerdictMessage(
            acquisition_id=acquisition_id, product_id=scores.product_id, run_index=scores.run_index,
            decision="REJECT" if over else "ACCEPT", strip_score=max(values), worst_margin=0.1,
            model_name=scores.model_name, model_version=scores.model_version, threshold_set="strip",
            patches=[PatchVerdict(p.frame, p.vial, p.region, p.score, 0.5, i in over)
                     for i, p in enumerate(scores.patches)],
            run_policy=RunPolicyState(7, 10, 1, 0, 1, "PENDING"), timings_ms={"aggregator_decide_ms": 0.1},
        ).to_json().encode()


class Aborted(Exception):
    def __init__(self, code: grpc.StatusCode, details: str) -> None:
        super().__init__(f"{code.name}: {details}")
        self.code, self.details = code, details


class FakeContext:
    """What a handler reads of gRPC's context: the caller's time left; ``abort`` raises as gRPC's does."""

    def __init__(self, time_remaining_s: float = WAIT_S) -> None:
        self._time_remaining_s = time_remaining_s

    def time_remaining(self) -> float:
        return self._time_remaining_s

    def abort(self, code: grpc.StatusCode, details: str) -> None:
        raise Aborted(code, details)


class Served:
    def __init__(self, servicer: InspectionService, inspector: FakeInspector, store: FakeStore,
                 streams: FakeExchange, lost: list[str]) -> None:
        self.servicer, self.inspector, self.store, self.streams, self.lost = servicer, inspector, store, streams, lost
        self.calls = ThreadPoolExecutor(4)

    def inspect(self, acquisition_id: str, over: tuple[int, ...] = OVER) -> pb.Verdict:
        """Inspect in a worker thread, as gRPC runs it; fails (rather than hangs) if it does not answer."""
        self.streams.over[acquisition_id] = over
        acq = build_acquisition(acquisition_id, "P-1", 1, RECIPE.id, FRAMES, indices=RECIPE.inspected_frames)
        return self.calls.submit(self.servicer.Inspect, acq, FakeContext()).result(WAIT_S)

    def get_heatmaps(self, acquisition_id: str, time_remaining_s: float = WAIT_S):  # type: ignore[no-untyped-def]
        """A future of GetHeatmaps: its reply, or the Aborted it ended with."""
        return self.calls.submit(self.servicer.GetHeatmaps, pb.HeatmapRequest(acquisition_id=acquisition_id),
                                 FakeContext(time_remaining_s))


@pytest.fixture()
def served(monkeypatch: pytest.MonkeyPatch) -> Iterator[Served]:
    store, streams, lost = FakeStore(), FakeExchange(), []
    monkeypatch.setattr(service_module, "HeatmapStore", lambda *_args: store)
    monkeypatch.setattr(service_module, "exchange", streams)
    monkeypatch.setattr(service_module, "HEATMAP_QUEUE", 1)  # one waiting behind the one running
    inspector = FakeInspector()
    config = PreprocessorConfig(deadline_ms=5000)
    servicer = InspectionService(config, RECIPE, inspector, redis.Redis(), threading.Event(), lost.append)
    made = Served(servicer, inspector, store, streams, lost)
    yield made
    inspector.gate.set(), streams.hold.set()
    servicer.finish_heatmaps(1.0)
    made.calls.shutdown(wait=True)


def test_the_answer_does_not_wait_for_the_heatmap_fetch(served: Served) -> None:
    served.inspector.gate.clear()  # Triton holds the heatmaps: before this change Inspect waited here
    started = time.monotonic()
    verdict = served.inspect("acq-1")
    assert verdict.decision == pb.REJECT and time.monotonic() - started < WAIT_S / 2
    assert served.inspector.fetching.wait(WAIT_S)  # the fetch is under way, after the answer
    assert served.store.kept == {}
    served.inspector.gate.set()
    assert served.get_heatmaps("acq-1").result(WAIT_S).heatmaps


def test_get_heatmaps_right_after_a_reject_returns_them_once_the_fetch_ends(served: Served) -> None:
    served.inspector.gate.clear()
    served.inspect("acq-1")
    asked = served.get_heatmaps("acq-1")
    time.sleep(0.1)
    assert not asked.done()  # waiting for the fetch, not answering "none kept"
    served.inspector.gate.set()
    reply = asked.result(WAIT_S)
    assert [(h.frame, h.vial, h.region, h.region_id) for h in reply.heatmaps] == [(0, 1, 1, "R1"), (15, 0, 2, "R2")]
    assert served.inspector.heatmap_calls == [len(OVER)]  # one call, the flagged patches only
    for heatmap in reply.heatmaps:  # the fake's heatmap is the patch itself: both PNGs show it
        assert heatmap.png and heatmap.png == heatmap.patch_png
    assert served.lost == []


def test_a_screen_told_of_the_reject_before_inspect_read_its_verdict_still_gets_the_heatmaps(
        served: Served) -> None:
    served.streams.hold.clear()  # the verdict exists (WatchVerdicts showed it); Inspect has not read it yet
    served.streams.over["acq-early"] = OVER
    acq = build_acquisition("acq-early", "P-1", 1, RECIPE.id, FRAMES, indices=RECIPE.inspected_frames)
    inspecting = served.calls.submit(served.servicer.Inspect, acq, FakeContext())
    assert served.streams.waiting.wait(WAIT_S)
    asked = served.get_heatmaps("acq-early")
    time.sleep(0.1)
    assert not asked.done()
    served.streams.hold.set()
    assert inspecting.result(WAIT_S).decision == pb.REJECT
    assert len(asked.result(WAIT_S).heatmaps) == len(OVER)


def test_an_accepted_acquisition_is_answered_not_found_at_once(served: Served) -> None:
    assert served.inspect("acq-good", over=()).decision == pb.ACCEPT
    started = time.monotonic()
    with pytest.raises(Aborted) as raised:
        served.get_heatmaps("acq-good").result(WAIT_S)
    assert raised.value.code == grpc.StatusCode.NOT_FOUND and time.monotonic() - started < 1.0
    assert served.inspector.heatmap_calls == [] and served.servicer._pending.pending() == 0


@pytest.mark.parametrize("down", ["triton", "redis"])
def test_a_failing_fetch_only_logs_the_verdict_stands_and_get_heatmaps_answers_not_found(
        served: Served, down: str, caplog: pytest.LogCaptureFixture) -> None:
    if down == "triton":
        served.inspector.fail_with = "Triton at localhost:8001 is unreachable"
    else:
        served.store.down = True
    with caplog.at_level(logging.WARNING, logger="preprocessor.service"):
        verdict = served.inspect("acq-1")
        assert verdict.decision == pb.REJECT and [p.over for p in verdict.patches].count(True) == len(OVER)
        with pytest.raises(Aborted) as raised:
            served.get_heatmaps("acq-1").result(WAIT_S)
    assert raised.value.code == grpc.StatusCode.NOT_FOUND and "no heatmaps are kept" in raised.value.details
    assert "heatmaps of rejected acquisition acq-1 not kept" in caplog.text
    assert served.lost == ["fetch_failed"]
    # nothing else lost: the next reject's heatmaps are kept as usual
    served.inspector.fail_with, served.store.down = "", False
    served.inspect("acq-2")
    assert len(served.get_heatmaps("acq-2").result(WAIT_S).heatmaps) == len(OVER)


def test_a_full_queue_drops_the_heatmaps_with_a_warning_and_the_answer_never_blocks(
        served: Served, caplog: pytest.LogCaptureFixture) -> None:
    served.inspector.gate.clear()
    served.inspect("acq-running")
    assert served.inspector.fetching.wait(WAIT_S)  # the one worker is busy with it
    served.inspect("acq-queued")                   # waits behind it: the queue (1) is now full
    with caplog.at_level(logging.WARNING, logger="preprocessor.pending_heatmaps"):
        started = time.monotonic()
        assert served.inspect("acq-dropped").decision == pb.REJECT
        assert time.monotonic() - started < WAIT_S / 2
    assert "acq-dropped" in caplog.text and "not kept" in caplog.text
    assert served.lost == ["queue_full"]
    with pytest.raises(Aborted) as raised:  # at once: nothing is pending for it any more
        served.get_heatmaps("acq-dropped", time_remaining_s=0.5).result(WAIT_S)
    assert raised.value.code == grpc.StatusCode.NOT_FOUND
    served.inspector.gate.set()
    for kept in ("acq-running", "acq-queued"):
        assert len(served.get_heatmaps(kept).result(WAIT_S).heatmaps) == len(OVER)


def test_a_fetch_still_running_at_the_readers_deadline_is_unavailable_not_not_found(served: Served) -> None:
    """NOT_FOUND is remembered by the HMI ("no longer kept"); UNAVAILABLE makes it ask again."""
    served.inspector.gate.clear()
    served.inspect("acq-slow")
    with pytest.raises(Aborted) as raised:
        served.get_heatmaps("acq-slow", time_remaining_s=0.1).result(WAIT_S)
    assert raised.value.code == grpc.StatusCode.UNAVAILABLE and "still being fetched" in raised.value.details


def test_at_stop_the_queued_fetches_drain_and_later_ones_are_cancelled(served: Served) -> None:
    served.inspector.gate.clear()
    served.inspect("acq-running")
    assert served.inspector.fetching.wait(WAIT_S)
    served.inspect("acq-queued")
    threading.Timer(0.1, served.inspector.gate.set).start()
    served.servicer.finish_heatmaps(WAIT_S)  # drained: both fetched before it returns
    assert set(served.store.kept) == {"acq-running", "acq-queued"} and served.lost == []
    served.inspect("acq-after-stop")  # a call that ends after the drain: its heatmaps are dropped, logged
    assert served.lost == ["stopping"] and "acq-after-stop" not in served.store.kept
