"""The Inspection servicer: one acquisition in, the aggregator's verdict out.

Inspect reads as a straight line: validate the fields and frame headers ->
replay check (same frames as the first call under this id?) -> decode and cut
the patches with vialguard.patching (the one patching path) -> an inference slot
(admission control) -> infer (score and phi) -> queue the scores -> wait for the
verdict -> answer; for a reject only, the heatmaps of the patches it names are
fetched and kept after the answer (preprocessor.pending_heatmaps), so the camera
never waits for images only people look at.
Every failure leaves as a gRPC status whose message says what went wrong,
which component, and whether anything was queued: once the scores are queued,
the verdict is produced and kept even if the caller has gone, and a retry with
the same acquisition_id replays it.
"""
from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator

import grpc
import numpy as np
import redis

from preprocessor import convert, exchange, watch
from preprocessor.admission import Admission, Shed
from preprocessor.config import PreprocessorConfig
from preprocessor.deadline import Deadline
from preprocessor.decode import inspected_frames
from preprocessor.heatmap_store import HeatmapStore
from preprocessor.pending_heatmaps import FETCH_FAILED, PendingHeatmaps
from preprocessor.patches import cut_inspected
from preprocessor.replay import frames_digest
from preprocessor.validate import RecipeMismatch, check_id, check_identity, check_watch_request, shown
from vialguard.errors import AcquisitionError
from vialguard.heatmap import to_png_gray
from vialguard.inference import (
    InferenceOverloaded, InferenceResult, InferenceTimeout, InferenceUnavailable, Inspector,
)
from vialguard.messages import ScoresMessage, VerdictMessage
from vialguard.patching import acquisition_labels
from vialguard.recipe import Recipe
from vialguard.v1 import inspection_pb2 as pb
from vialguard.v1 import inspection_pb2_grpc as pb_grpc

log = logging.getLogger(__name__)

START_ID_METADATA = "vialguard-start-id"  # WatchVerdicts: the stream id the stream starts after
MAX_DETAILS_CHARS = 2000  # a status message stays far below gRPC's 8 KiB metadata limit


class Failure(Exception):
    """A call that ends with a gRPC status and a message for the line engineer."""

    def __init__(self, code: grpc.StatusCode, message: str) -> None:
        message = message if len(message) <= MAX_DETAILS_CHARS else message[:MAX_DETAILS_CHARS - 3] + "..."
        super().__init__(message)
        self.code = code
        self.message = message


def _parse_verdict(raw: bytes) -> VerdictMessage:
    try:
        return VerdictMessage.from_json(raw)
    except (ValueError, KeyError, TypeError) as exc:
        raise Failure(grpc.StatusCode.INTERNAL,
                      f"the verdict stored by the aggregator cannot be read ({exc}); check the aggregator's version") from exc


def _once(action: Callable[[], object]) -> Callable[[], None]:
    """``action`` wrapped so that only its first call runs, from whichever thread calls first."""
    lock, done = threading.Lock(), [False]

    def run() -> None:
        with lock:
            if done[0]:
                return
            done[0] = True
        action()
    return run


def _ms(since: float) -> float:
    return (time.perf_counter() - since) * 1000.0


# A reject's heatmaps are fetched after its answer, by this many threads, with at most this many
# waiting (more are dropped, logged and counted: a slow Triton or Redis must not pile them up),
# each fetch within its own timeout; at stop, those queued get HEATMAP_DRAIN_S to finish.
HEATMAP_WORKERS = 1
HEATMAP_QUEUE = 8
HEATMAP_FETCH_TIMEOUT_S = 2.0
HEATMAP_DRAIN_S = 2.0
STOP_MARGIN_S = 0.25  # a call in flight at SIGTERM answers this long before the grace period ends


class _UntilStop:
    """A call's deadline, cut short by a graceful stop: a call still waiting for its verdict then
    answers UNAVAILABLE ("retry with the same id") before gRPC would cancel it at the end of the
    grace period, which the camera saw as CANCELLED and did not retry."""

    def __init__(self, deadline: Deadline, stop_by: Callable[[], float | None]) -> None:
        self._deadline, self._stop_by = deadline, stop_by

    def remaining(self) -> float:
        stop_by = self._stop_by()
        left = self._deadline.remaining()
        return left if stop_by is None else max(0.0, min(left, stop_by - time.monotonic()))

    def expired(self) -> bool:
        return self.remaining() <= 0.0


class InspectionService(pb_grpc.InspectionServicer):
    def __init__(
        self,
        config: PreprocessorConfig,
        recipe: Recipe,
        inspector: Inspector,
        client: redis.Redis,
        stopping: threading.Event,
        on_heatmaps_lost: Callable[[str], None] | None = None,
    ) -> None:
        """``on_heatmaps_lost(reason)`` is told of every reject whose heatmaps are not kept (metrics)."""
        self._config = config
        self._recipe = recipe
        self._inspector = inspector
        self._redis = client
        self._stopping = stopping
        self._labels = acquisition_labels(recipe)
        self._heatmaps = HeatmapStore(client, config.heatmap_ttl_s, config.heatmap_max_acquisitions)
        self._heatmaps_lost = on_heatmaps_lost or (lambda _reason: None)
        self._pending = PendingHeatmaps(HEATMAP_WORKERS, HEATMAP_QUEUE, self._heatmaps_lost)
        # Each stream holds a worker thread: screens may take half of them, never the camera's share.
        self._max_watchers = max(1, config.workers // 2)
        self._watch_slots = threading.BoundedSemaphore(self._max_watchers)
        self.admission = Admission(config.max_inflight, config.admission_wait_ms / 1000)
        self._stop_by: float | None = None

    def begin_shutdown(self, grace_s: float) -> None:
        """Calls in flight answer before ``grace_s`` ends, so none is cut off as CANCELLED."""
        self._stop_by = time.monotonic() + max(0.0, grace_s - STOP_MARGIN_S)

    def finish_heatmaps(self, drain_s: float = HEATMAP_DRAIN_S) -> None:
        """After the server stopped: the heatmap fetches still queued get ``drain_s``, the rest are cancelled."""
        self._pending.close(drain_s)

    # ---------------------------------------------------------------- Inspect
    def Inspect(self, request: pb.Acquisition, context: grpc.ServicerContext) -> pb.Verdict:
        started = time.perf_counter()
        deadline = Deadline.from_caller(
            context.time_remaining(), self._config.deadline_ms / 1000, self._config.max_deadline_ms / 1000
        )
        try:
            verdict = self._inspect(request, deadline, started)
        except Failure as failure:
            log.warning("acquisition %s: %s %s", shown(request.acquisition_id), failure.code.name, failure.message)
            context.abort(failure.code, failure.message)
        except Exception as exc:  # a bug must still be answered, with a status the camera can log
            log.exception("acquisition %s: unexpected error", shown(request.acquisition_id))
            context.abort(grpc.StatusCode.INTERNAL,
                          f"internal error in the preprocessor ({type(exc).__name__}: {str(exc)[:200]}); see its log")
        log.info("acquisition %s: %s strip_score=%.4f total=%.1f ms%s", verdict.acquisition_id,
                 pb.Decision.Name(verdict.decision), verdict.strip_score, verdict.timings.total_ms,
                 " (replayed)" if verdict.replayed else "")
        return verdict

    def _inspect(self, acq: pb.Acquisition, deadline: Deadline, started: float) -> pb.Verdict:
        try:
            check_identity(acq, self._recipe)
            digest = frames_digest(acq, inspected_frames(acq.frames, self._recipe))
        except RecipeMismatch as exc:
            raise Failure(grpc.StatusCode.FAILED_PRECONDITION, str(exc)) from exc
        except AcquisitionError as exc:
            raise Failure(grpc.StatusCode.INVALID_ARGUMENT, str(exc)) from exc
        acquisition_id = acq.acquisition_id
        claim = self._redis_call("checking for an earlier verdict", False, lambda: exchange.claim(
            self._redis, acquisition_id, deadline, digest, self._config.replay_ttl_s))
        if not claim.same_frames(digest):
            if claim.claimed:
                exchange.release(self._redis, acquisition_id)
            raise Failure(
                grpc.StatusCode.ALREADY_EXISTS,
                f"acquisition_id '{acquisition_id}' was already used for other frames (first {claim.first_digest}, "
                f"now {digest}); a retry must resend exactly the same acquisition, and a new acquisition needs a "
                f"new acquisition_id. Nothing was inspected or queued")
        if claim.stored_verdict is not None:
            return self._answer(claim.stored_verdict, {}, started, replayed=True)
        if not claim.claimed:  # the same acquisition is in flight in another call: share its verdict
            raw = self._await_verdict(acquisition_id, deadline, watch_claim=True)
            return self._answer(raw, {}, started, replayed=True)
        # Pending from before its scores are queued: a screen told of the reject by WatchVerdicts may
        # ask GetHeatmaps before this call has read the verdict, and must wait, not hear "none kept".
        self._pending.expect(acquisition_id)
        submitted = False
        try:
            try:
                local_ms, result, patches = self._score_and_queue(acq, deadline, started)
            except BaseException:
                exchange.release(self._redis, acquisition_id, drop_digest=claim.first_digest is None)
                raise
            queued_at = time.perf_counter()
            verdict = _parse_verdict(self._await_verdict(acquisition_id, deadline))
            aggregation = verdict.timings_ms.get("aggregator_decide_ms", 0.0)
            local_ms["queue_ms"] = max(0.0, _ms(queued_at) - aggregation)
            if verdict.decision == "REJECT":
                submitted = self._keep_heatmaps_later(verdict, result, patches)
            return self._answer(verdict, local_ms, started, replayed=False)
        finally:
            if not submitted:
                self._pending.settle(acquisition_id)

    def _score_and_queue(
        self, acq: pb.Acquisition, deadline: Deadline, started: float
    ) -> tuple[dict[str, float], InferenceResult, np.ndarray]:
        """Decode, cut, infer and queue; returns this call's stage times, the inference result and the patches.

        The inference slot is taken first: an acquisition that would be shed costs
        no decoding, and one admitted never waits behind more than the slots allow.
        """
        try:
            with self.admission.slot(deadline):
                try:
                    cut_out = cut_inspected(acq.frames, self._recipe,
                                            lambda: self._call_inspector(self._inspector.patch_size))
                    patches, decoded = cut_out.patches, cut_out.decoded_at
                except AcquisitionError as exc:
                    raise Failure(grpc.StatusCode.INVALID_ARGUMENT, str(exc)) from exc
                cut = time.perf_counter()
                if deadline.expired():
                    raise Failure(grpc.StatusCode.DEADLINE_EXCEEDED,
                                  f"the deadline passed before inference could start (decoding and patching took "
                                  f"{(cut - started) * 1000:.0f} ms); nothing was queued, retry with a longer "
                                  f"deadline")
                # A version that answers heatmaps of a few patches gets asked for them after a reject
                # only; an older one brings them back with the scores, as before (a second whole pass
                # would not fit the slot).
                with_heatmaps = not self._call_inspector(self._inspector.heatmaps_apart)
                result = self._call_inspector(lambda: self._inspector.infer(
                    patches, timeout_s=deadline.remaining(), heatmaps=with_heatmaps))
        except Shed as exc:
            raise Failure(grpc.StatusCode.RESOURCE_EXHAUSTED, str(exc)) from exc
        inferred = time.perf_counter()
        if result.scores.shape != (len(self._labels),):
            raise Failure(grpc.StatusCode.INTERNAL,
                          f"the inference server returned {result.scores.shape} scores for {len(self._labels)} "
                          f"patches (model '{result.model_name}' version {result.model_version}); nothing was queued")
        local_ms = {"decode_ms": (decoded - started) * 1000, "patching_ms": (cut - decoded) * 1000,
                    "inference_ms": (inferred - cut) * 1000}
        message = ScoresMessage(
            acquisition_id=acq.acquisition_id, product_id=acq.product_id, run_index=acq.run_index,
            recipe_id=acq.recipe_id, model_name=result.model_name, model_version=int(result.model_version),
            patches=convert.patch_scores(self._labels, result.scores.tolist(),
                                         None if result.phi is None else result.phi.tolist()),
            timings_ms=dict(local_ms),
            camera_timestamp_ns=min((f.camera_timestamp_ns for f in acq.frames if f.camera_timestamp_ns), default=0),
            received_unix_ms=int(time.time() * 1000),  # enqueued at: the aggregator measures queue wait from it
        )
        # Queued even when the caller's deadline has passed: the work is done, and a retry replays it.
        self._redis_call("queuing the scores", False, lambda: exchange.enqueue(self._redis, message))
        return local_ms, result, patches

    def _call_inspector(self, call):  # type: ignore[no-untyped-def]
        try:
            return call()
        except InferenceOverloaded as exc:  # Triton's bounded queue is full: load, not an outage
            raise Failure(grpc.StatusCode.RESOURCE_EXHAUSTED,
                          f"the inference server is at its queue limit ({exc}); this acquisition was refused at "
                          f"once and nothing was queued: retry with the same acquisition_id after a pause") from exc
        except InferenceTimeout as exc:  # slow, not down
            raise Failure(grpc.StatusCode.DEADLINE_EXCEEDED,
                          f"inference did not finish before the deadline ({exc}); nothing was queued, "
                          f"retry with the same acquisition_id or a longer deadline") from exc
        except InferenceUnavailable as exc:
            raise Failure(grpc.StatusCode.UNAVAILABLE,
                          f"the inference server (Triton at {self._config.triton_url}, model "
                          f"'{self._config.model_name}') did not answer: {exc}; nothing was queued, retry") from exc

    def _await_verdict(self, acquisition_id: str, deadline: Deadline, watch_claim: bool = False) -> bytes:
        bounded = _UntilStop(deadline, lambda: self._stop_by)
        try:
            return self._redis_call("waiting for the verdict", True, lambda: exchange.wait_for_verdict(
                self._redis, acquisition_id, bounded, watch_claim))  # type: ignore[arg-type]
        except exchange.ClaimLost as exc:
            raise Failure(grpc.StatusCode.UNAVAILABLE,
                          f"an earlier call with acquisition_id '{acquisition_id}' failed before its scores were "
                          f"queued, and this call was waiting on it; nothing was queued, retry") from exc
        except exchange.VerdictTimeout as exc:
            if self._stop_by is not None and deadline.remaining() > 0:
                raise Failure(grpc.StatusCode.UNAVAILABLE,
                              f"this preprocessor is shutting down; the scores of acquisition '{acquisition_id}' are "
                              f"queued and its verdict will be kept: retry with the same acquisition_id") from exc
            raise Failure(
                grpc.StatusCode.DEADLINE_EXCEEDED,
                f"no verdict for acquisition '{acquisition_id}' before the deadline; its scores are queued and "
                f"its verdict will be kept: retry with the same acquisition_id to get it "
                f"(if this repeats, check that the aggregator is running)",
            ) from exc

    def _redis_call(self, step: str, queued: bool, call):  # type: ignore[no-untyped-def]
        try:
            return call()
        except redis.RedisError as exc:
            after = ("the scores are queued: retry with the same acquisition_id to get the verdict" if queued
                     else "nothing was queued, retry")
            raise Failure(grpc.StatusCode.UNAVAILABLE,
                          f"Redis at {self._config.redis_display} is unreachable ({exc}) while {step}; {after}") from exc

    def _answer(self, verdict: VerdictMessage | bytes, local_ms: dict[str, float], started: float,
                replayed: bool) -> pb.Verdict:
        message = verdict if isinstance(verdict, VerdictMessage) else _parse_verdict(verdict)
        reply = convert.to_proto(message, self._recipe, local_ms, replayed=replayed)
        reply.timings.total_ms = _ms(started)
        return reply

    def _keep_heatmaps_later(self, verdict: VerdictMessage, result: InferenceResult,
                             patches: np.ndarray) -> bool:
        """Hand a reject's heatmaps to the background workers; False when there are none to keep or it was dropped.

        Only the patches the verdict names (the over-threshold ones) are taken, copied
        here (a few patches) so the fetch holds nothing of this call's arrays.
        """
        indices = [i for i in convert.heatmap_patches(verdict, self._recipe) if i < len(patches)]
        if not indices:
            return False
        chosen = patches[indices]  # fancy indexing: a copy
        served = None if result.heatmaps is None else result.heatmaps[indices]
        acquisition_id, version = verdict.acquisition_id, int(result.model_version)
        return self._pending.submit(acquisition_id,
                                    lambda: self._keep_heatmaps(acquisition_id, indices, chosen, served, version))

    def _keep_heatmaps(self, acquisition_id: str, indices: list[int], patches: np.ndarray,
                       served: np.ndarray | None, model_version: int) -> None:
        """Best effort, after the answer: the verdict stands even when its heatmaps cannot be kept.

        ``patches`` are the named patches, in the order of ``indices``. Their heatmaps come
        from the version that scored them, within HEATMAP_FETCH_TIMEOUT_S (``served``: an
        older version already brought them with the scores). The inspected patch is kept
        beside its heatmap, so the operator screen can lay one over the other: nothing else
        outside the preprocessor holds its pixels. Triton or Redis down only logs.
        """
        try:
            heatmaps = served if served is not None else self._inspector.heatmaps(
                patches, model_version, timeout_s=HEATMAP_FETCH_TIMEOUT_S)
            self._heatmaps.put(acquisition_id, {i: to_png_gray(h) for i, h in zip(indices, heatmaps)},
                               {i: to_png_gray(p) for i, p in zip(indices, patches)})
        except (redis.RedisError, ValueError, InferenceUnavailable) as exc:  # timeouts and overload included
            log.warning("heatmaps of rejected acquisition %s not kept: %s; the verdict stands", acquisition_id, exc)
            self._heatmaps_lost(FETCH_FAILED)

    # ---------------------------------------------------------- WatchVerdicts
    def WatchVerdicts(self, request: pb.WatchRequest, context: grpc.ServicerContext) -> Iterator[pb.Verdict]:
        try:
            check_watch_request(request)
        except AcquisitionError as exc:
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(exc))
        if request.after_id and not watch.STREAM_ID.match(request.after_id):
            context.abort(grpc.StatusCode.INVALID_ARGUMENT,
                          f"after_id {shown(request.after_id)} is not a stream id like '1700000000000-0'; "
                          "pass the stream_id of the last verdict received, or leave it empty")
        if not self._watch_slots.acquire(blocking=False):
            context.abort(grpc.StatusCode.RESOURCE_EXHAUSTED,
                          f"this preprocessor already serves {self._max_watchers} WatchVerdicts streams, its limit "
                          f"(half its {self._config.workers} workers, the rest are kept for the camera); close "
                          f"unused screens or raise PREPROCESSOR_WORKERS")
        release = _once(self._watch_slots.release)
        context.add_callback(release)  # at cancellation, not when the blocked read next returns
        try:
            yield from self._watch(request, context)
        finally:
            release()

    def _watch(self, request: pb.WatchRequest, context: grpc.ServicerContext) -> Iterator[pb.Verdict]:
        last = request.after_id
        try:
            last = last or watch.newest_id(self._redis)
            # Tells the client where its stream starts (and that it is live): resuming from here misses nothing.
            context.send_initial_metadata(((START_ID_METADATA, last),))
            for last, verdict in watch.follow(self._redis, last,
                                              lambda: context.is_active() and not self._stopping.is_set()):
                if not request.product_id or verdict.product_id == request.product_id:
                    yield convert.to_proto(verdict, self._recipe, {}, stream_id=last)
        except redis.RedisError as exc:
            context.abort(grpc.StatusCode.UNAVAILABLE,
                          f"Redis at {self._config.redis_display} is unreachable ({exc}); reconnect with "
                          f"after_id='{last}' to resume without missing a verdict")
        if self._stopping.is_set():
            context.abort(grpc.StatusCode.UNAVAILABLE,
                          f"this preprocessor is shutting down; reconnect with after_id='{last}' to resume")

    # ------------------------------------------------------------ GetHeatmaps
    def GetHeatmaps(self, request: pb.HeatmapRequest, context: grpc.ServicerContext) -> pb.HeatmapReply:
        try:
            check_id("acquisition_id", request.acquisition_id)
        except AcquisitionError as exc:
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(exc))
        # A reject's heatmaps are kept just after its answer: a screen that asks right away waits for them.
        deadline = _UntilStop(Deadline.from_caller(context.time_remaining(), self._config.deadline_ms / 1000,
                                                   self._config.max_deadline_ms / 1000), lambda: self._stop_by)
        if not self._pending.wait(request.acquisition_id, deadline.remaining()):
            context.abort(grpc.StatusCode.UNAVAILABLE,
                          f"the heatmaps of acquisition '{request.acquisition_id}' are still being fetched; "
                          f"ask again in a moment (or with a longer deadline)")
        try:
            stored, patch_pngs = self._heatmaps.get_with_patches(request.acquisition_id)
        except redis.RedisError as exc:
            context.abort(grpc.StatusCode.UNAVAILABLE, f"Redis at {self._config.redis_display} is unreachable ({exc})")
        if not stored:
            context.abort(grpc.StatusCode.NOT_FOUND,
                          f"no heatmaps are kept for acquisition '{request.acquisition_id}': it was accepted, "
                          f"is unknown, or its heatmaps expired (kept {self._config.heatmap_ttl_s} s, at most "
                          f"{self._config.heatmap_max_acquisitions} rejected acquisitions)")
        reply = pb.HeatmapReply(acquisition_id=request.acquisition_id)
        for index in sorted(stored):
            if 0 <= index < len(self._labels):
                label = self._labels[index]
                reply.heatmaps.add(frame=convert.sequence_frame(label.frame, self._recipe), vial=label.vial,
                                   region=label.region, region_id=label.region_id, png=stored[index],
                                   patch_png=patch_pngs.get(index, b""))
        return reply
