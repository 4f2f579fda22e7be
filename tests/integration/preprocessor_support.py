"""What the preprocessor's gRPC tests share: a real server on a free port over a real Redis.

Two stand-ins, both named as such:
- ``RecordingInspector`` replaces Triton. These tests are about the
  preprocessor (decode, patching, queuing, statuses); the real-Triton path is
  covered by the Triton and end-to-end tests.
- ``answer_as_aggregator`` plays the aggregator's part for one acquisition: it
  reads the ScoresMessage the preprocessor queued and publishes a VerdictMessage
  that the test builds, with the aggregator's own Publisher (the real writer of
  the Redis contract), so the test checks the contract without deciding anything.
"""
from __future__ import annotations

import threading
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

import grpc
import numpy as np
import pytest
import redis

from aggregator.publish import Publisher
from preprocessor import exchange
from preprocessor.config import MIB, PreprocessorConfig
from preprocessor.server import RunningServer, start_server
from tests.integration.redis_server import RedisServer
from vialguard.inference import InferenceResult, InferenceTimeout, InferenceUnavailable
from vialguard.messages import SCORES_STREAM, PatchVerdict, RunPolicyState, ScoresMessage, VerdictMessage
from vialguard.patching import to_unit_float
from vialguard.recipe import load_recipe
from vialguard.v1 import inspection_pb2_grpc as pb_grpc

RECIPE = load_recipe()            # the shipped bfs5-10ml: real 1280x1024 frames
MAX_MESSAGE_MB = 24               # just above one full 16-frame MONO8 acquisition (21 MiB)
THRESHOLD = 0.5


class RecordingInspector:
    """Stand-in for Triton: remembers what it was sent; score = patch mean, heatmap = the patch.

    ``apart`` plays a version with a heatmap-only graph (heatmaps fetched after a reject);
    False plays an older one (heatmaps asked for with the scores).
    """

    def __init__(self, patch_size: int) -> None:
        self._patch_size = patch_size
        self.calls = 0
        self.last_patches: np.ndarray | None = None
        self.asked_heatmaps: list[bool] = []       # infer's heatmaps flag, call by call
        self.heatmap_calls: list[tuple[int, int]] = []  # (patch count, version) of each heatmaps call
        self.apart = True
        self.fail_with = ""     # set: infer raises InferenceUnavailable with this message
        self.delay_s = 0.0      # set: infer takes this long (then answers or fails)
        self.times_out = False  # set: infer raises InferenceTimeout (Triton busy past the deadline)
        self.ready = True

    def patch_size(self) -> int:
        return self._patch_size

    def is_ready(self) -> bool:
        return self.ready

    def heatmaps_apart(self) -> bool:
        return self.apart

    def infer(self, patches: np.ndarray, timeout_s: float, heatmaps: bool = False) -> InferenceResult:
        time.sleep(self.delay_s)
        if self.times_out:
            raise InferenceTimeout(f"did not finish within {timeout_s:.3f} s")
        if self.fail_with:
            raise InferenceUnavailable(self.fail_with)
        self.calls += 1
        self.last_patches = patches
        self.asked_heatmaps.append(heatmaps)
        unit = to_unit_float(patches)
        scores = unit.mean(axis=(1, 2, 3)).astype(np.float32)
        return InferenceResult(scores=scores, heatmaps=unit if heatmaps else None, model_name="inspector",
                               model_version=7)

    def heatmaps(self, patches: np.ndarray, model_version: int, timeout_s: float) -> np.ndarray:
        self.heatmap_calls.append((len(patches), model_version))
        return to_unit_float(patches)


@dataclass
class Stack:
    redis_server: RedisServer
    redis: redis.Redis
    inspector: RecordingInspector
    server: RunningServer
    channel: grpc.Channel
    stub: pb_grpc.InspectionStub
    config: PreprocessorConfig


def make_config(redis_url: str) -> PreprocessorConfig:
    return PreprocessorConfig(redis_url=redis_url, deadline_ms=5000, max_message_mb=MAX_MESSAGE_MB,
                              health_interval_s=0.2, heatmap_max_acquisitions=50, workers=8, grace_s=5.0)


def open_stack(redis_server: RedisServer, config: PreprocessorConfig | None = None) -> Stack:
    config = config or make_config(redis_server.url)
    client = exchange.connect(config.redis_url)
    inspector = RecordingInspector(RECIPE.patch_size)
    running = start_server(config, RECIPE, inspector, client, address="127.0.0.1:0")
    channel = grpc.insecure_channel(f"127.0.0.1:{running.port}",
                                    options=[("grpc.max_send_message_length", 64 * MIB),
                                             ("grpc.max_receive_message_length", 64 * MIB)])  # 256 px heatmaps
    return Stack(redis_server, client, inspector, running, channel, pb_grpc.InspectionStub(channel), config)


def close_stack(stack: Stack) -> None:
    stack.channel.close()
    stack.server.stop(None).wait(10)
    stack.redis.close()


@pytest.fixture(scope="module")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    with RedisServer(tmp_path_factory.mktemp("redis")) as server:
        yield server


@pytest.fixture(scope="module")
def stack(redis_server: RedisServer) -> Iterator[Stack]:
    opened = open_stack(redis_server)
    yield opened
    close_stack(opened)


def random_frames(count: int = 16, seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [rng.integers(0, 256, (RECIPE.frame_height, RECIPE.frame_width), dtype=np.uint8) for _ in range(count)]


def wait_for_scores(client: redis.Redis, acquisition_id: str, timeout_s: float = 10.0) -> ScoresMessage:
    """The ScoresMessage the preprocessor queued for this acquisition."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        for _entry_id, fields in client.xrange(SCORES_STREAM):
            if fields[b"acquisition_id"].decode() == acquisition_id:
                return ScoresMessage.from_fields(fields)
        time.sleep(0.01)
    raise AssertionError(f"no scores queued for {acquisition_id} within {timeout_s} s")


def verdict_for(scores: ScoresMessage, over: Iterable[int] = ()) -> VerdictMessage:
    """A verdict built by the test: patches in ``over`` are over the threshold, the rest under."""
    over = set(over)
    values = [p.score for p in scores.patches]
    patches = [PatchVerdict(p.frame, p.vial, p.region, p.score, THRESHOLD, i in over)
               for i, p in enumerate(scores.patches)]
    rejected = bool(over)
    return VerdictMessage(
        acquisition_id=scores.acquisition_id, product_id=scores.product_id, run_index=scores.run_index,
        decision="REJECT" if rejected else "ACCEPT", strip_score=max(values), worst_margin=max(values) - THRESHOLD,
        model_name=scores.model_name, model_version=scores.model_version, threshold_set="strip",
        patches=patches, run_policy=RunPolicyState(7, 10, 1, int(not rejected), int(rejected), "PENDING"),
        timings_ms={**scores.timings_ms, "queue_wait_ms": 1.5, "aggregator_decide_ms": 0.5},
        decided_unix_ms=int(time.time() * 1000),
    )


def answer_as_aggregator(client: redis.Redis, acquisition_id: str, over: Iterable[int] = ()) -> VerdictMessage:
    """Publish the test's verdict for a queued acquisition the way the aggregator does."""
    verdict = verdict_for(wait_for_scores(client, acquisition_id), over)
    Publisher(client, reply_ttl_s=30, verdict_ttl_s=3600, product_ttl_s=3600).publish(verdict)
    return verdict


class Responder:
    """Answers every queued acquisition at once (ACCEPT), for latency measurements only."""

    def __init__(self, client: redis.Redis) -> None:
        self._client = client
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> "Responder":
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(5)

    def _run(self) -> None:
        publisher = Publisher(self._client, reply_ttl_s=30, verdict_ttl_s=3600, product_ttl_s=3600)
        last = "$"
        while not self._stop.is_set():
            for _stream, entries in self._client.xread({SCORES_STREAM: last}, block=100) or []:
                for entry_id, fields in entries:
                    last = entry_id
                    publisher.publish(verdict_for(ScoresMessage.from_fields(fields)))

