"""TritonInspector's own rules, against a fake tritonclient (the real server: tests/integration)."""
from __future__ import annotations

import time
from typing import Any

import numpy as np
import pytest
from tritonclient.utils import InferenceServerException

import preprocessor.inspector_client as module
from preprocessor.inspector_client import InferenceRejected, TritonInspector
from vialguard.inference import InferenceOverloaded, InferenceTimeout, InferenceUnavailable
from vialguard.inspector_io import DEADLINE_PARAMETER


class FakeResponse:
    def __init__(self, n: int, side: int, version: str, empty: bool = False) -> None:
        self.outputs = {"score": np.zeros((0 if empty else n, 1), np.float32),
                        "phi": np.full((0 if empty else n, 1), 0.25, np.float32),
                        "heatmap": np.zeros((0,) if empty else (n, side, side, 1), np.float32)}
        self.version = version

    def as_numpy(self, name: str) -> np.ndarray | None:
        return self.outputs.get(name)  # tritonclient answers None for an output not in the response

    def get_response(self) -> Any:
        return type("Reply", (), {"model_version": self.version})()


class FakeClient:
    """Answers from a script: an exception to raise or a response, one per call, shared by all channels."""

    script: list[Any] = []
    channels = 0

    def __init__(self, url: str) -> None:
        FakeClient.channels += 1

    def infer(self, model: str, inputs: list[Any], outputs: Any = None, client_timeout: float = 0, **kw: Any) -> Any:
        step = type(self).script.pop(0)
        if isinstance(step, Exception):
            raise step
        return step

    def get_model_metadata(self, model: str, as_json: bool = False, client_timeout: float = 0) -> Any:
        return type(self).script.pop(0)

    def get_model_config(self, model: str, as_json: bool = False, client_timeout: float = 0) -> Any:
        head = type(self).script[0] if type(self).script else None
        return type(self).script.pop(0) if isinstance(head, dict) and "config" in head else {"config": {}}

    def close(self) -> None:
        pass


@pytest.fixture()
def fake(monkeypatch: pytest.MonkeyPatch) -> type[FakeClient]:
    monkeypatch.setattr(module.grpcclient, "InferenceServerClient", FakeClient)
    FakeClient.script, FakeClient.channels = [], 0
    return FakeClient


def unavailable() -> InferenceServerException:
    return InferenceServerException("failed to connect to all addresses", status="StatusCode.UNAVAILABLE")


def patches(n: int = 60, side: int = 8) -> np.ndarray:
    return np.zeros((n, side, side, 1), np.float32)


def test_empty_outputs_are_an_error_not_a_good_product(fake: type[FakeClient]) -> None:
    fake.script = [FakeResponse(60, 8, "3", empty=True)]
    with pytest.raises(InferenceUnavailable, match="numpy >= 2"):
        TritonInspector("x:1").infer(patches(), timeout_s=1.0)


def test_the_version_comes_from_the_response(fake: type[FakeClient]) -> None:
    fake.script = [FakeResponse(60, 8, "12")]
    result = TritonInspector("x:1").infer(patches(), timeout_s=1.0)
    assert result.model_version == 12 and result.scores.shape == (60,)
    assert result.phi is not None and result.phi.shape == (60,) and float(result.phi[0]) == 0.25


def test_a_version_without_phi_still_scores(fake: type[FakeClient]) -> None:
    response = FakeResponse(60, 8, "3")
    del response.outputs["phi"]
    fake.script = [response]
    result = TritonInspector("x:1").infer(patches(), timeout_s=1.0)
    assert result.phi is None and result.scores.shape == (60,)


def test_a_dropped_connection_is_retried_on_a_new_channel(fake: type[FakeClient]) -> None:
    fake.script = [unavailable(), unavailable(), FakeResponse(60, 8, "1")]
    assert TritonInspector("x:1").infer(patches(), timeout_s=5.0).model_version == 1
    assert fake.channels == 3  # the first channel, then one fresh channel per failure


def test_retries_are_bounded(fake: type[FakeClient]) -> None:
    fake.script = [unavailable() for _ in range(10)]
    with pytest.raises(InferenceUnavailable, match=r"\(3 attempts\): failed to connect"):
        TritonInspector("x:1", max_attempts=3).infer(patches(), timeout_s=5.0)
    assert len(fake.script) == 7


def test_a_deadline_that_runs_out_is_a_timeout_not_an_outage(fake: type[FakeClient]) -> None:
    fake.script = [InferenceServerException("Deadline Exceeded", status="StatusCode.DEADLINE_EXCEEDED")]
    with pytest.raises(InferenceTimeout, match="did not finish"):
        TritonInspector("x:1").infer(patches(), timeout_s=0.05)


def test_retries_that_give_up_in_time_are_an_outage(fake: type[FakeClient]) -> None:
    fake.script = [unavailable() for _ in range(3)]
    with pytest.raises(InferenceUnavailable) as raised:
        TritonInspector("x:1", max_attempts=3).infer(patches(), timeout_s=5.0)
    assert not isinstance(raised.value, InferenceTimeout)


def test_refused_patches_are_not_retried(fake: type[FakeClient]) -> None:
    fake.script = [InferenceServerException("bad shape", status="StatusCode.INVALID_ARGUMENT"), FakeResponse(60, 8, "1")]
    with pytest.raises(InferenceRejected, match="bad shape"):
        TritonInspector("x:1").infer(patches(), timeout_s=5.0)
    assert len(fake.script) == 1


def test_patch_size_needs_a_pinned_version(fake: type[FakeClient]) -> None:
    meta = {"inputs": [{"name": "patches", "shape": ["-1", "-1", "-1", "1"]}]}
    fake.script = [meta]
    with pytest.raises(InferenceUnavailable, match="rollout"):
        TritonInspector("x:1").patch_size()
    fake.script = [{"inputs": [{"name": "patches", "shape": ["-1", "48", "48", "1"]}]}]
    assert TritonInspector("x:1").patch_size() == 48


def test_the_deadline_travels_to_triton_as_queue_timeout_and_grpc_deadline(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: dict[str, Any] = {}

    class Recording(FakeClient):
        def infer(self, model: str, inputs: list[Any], outputs: Any = None, client_timeout: float = 0,
                  **kw: Any) -> Any:
            seen.update(kw, client_timeout=client_timeout)
            return FakeResponse(60, 8, "1")

    monkeypatch.setattr(module.grpcclient, "InferenceServerClient", Recording)
    TritonInspector("x:1").infer(patches(), timeout_s=0.8)
    assert 0.7 < seen["client_timeout"] <= 0.8
    assert 700_000 < seen["timeout"] < 800_000  # microseconds, Triton's queue policy honours it
    # and as the wall-clock deadline the version's backend adapter checks before inferring
    left_ns = seen["parameters"][DEADLINE_PARAMETER] - time.time_ns()
    assert 0.6e9 < left_ns <= 0.8e9


def test_a_full_triton_queue_is_overload_and_not_retried(fake: type[FakeClient]) -> None:
    fake.script = [InferenceServerException("Exceeds maximum queue size", status="StatusCode.UNAVAILABLE"),
                   FakeResponse(60, 8, "1")]
    with pytest.raises(InferenceOverloaded, match="queue"):
        TritonInspector("x:1").infer(patches(), timeout_s=5.0)
    assert len(fake.script) == 1 and fake.channels == 1  # no retry, no reconnect


def test_a_request_the_adapter_refused_past_its_deadline_is_a_timeout(fake: type[FakeClient]) -> None:
    fake.script = [InferenceServerException("the caller's deadline passed 12 ms before its turn in Triton's queue: "
                                            "deadline passed, not inferred", status="StatusCode.CANCELLED")]
    with pytest.raises(InferenceTimeout):
        TritonInspector("x:1").infer(patches(), timeout_s=5.0)
    assert fake.script == []  # not retried: the caller's time is up


def test_a_request_timed_out_in_tritons_queue_is_a_timeout(fake: type[FakeClient]) -> None:
    fake.script = [InferenceServerException("Request timeout expired", status="StatusCode.UNAVAILABLE")]
    with pytest.raises(InferenceTimeout):
        TritonInspector("x:1").infer(patches(), timeout_s=5.0)


def test_a_reconnect_never_closes_a_channel_another_call_is_using(monkeypatch: pytest.MonkeyPatch) -> None:
    """Two calls on one channel; the first fails and reconnects while the second is still inside infer."""
    import threading

    inside, release = threading.Event(), threading.Event()
    clients: list[Any] = []

    class Channel:
        def __init__(self, url: str) -> None:
            self.closed, self.calls = False, 0
            clients.append(self)

        def infer(self, model: str, inputs: list[Any], **kw: Any) -> Any:
            if self.closed:
                raise ValueError("Cannot invoke RPC on closed channel!")
            self.calls += 1
            if self is clients[0] and self.calls == 1:  # the slow call in flight
                inside.set()
                release.wait(5)
                if self.closed:
                    raise ValueError("Cannot invoke RPC on closed channel!")
                return FakeResponse(60, 8, "1")
            if self is clients[0]:
                raise unavailable()
            return FakeResponse(60, 8, "1")

        def close(self) -> None:
            self.closed = True

    monkeypatch.setattr(module.grpcclient, "InferenceServerClient", Channel)
    inspector = TritonInspector("x:1")
    results: list[Any] = []
    slow = threading.Thread(target=lambda: results.append(inspector.infer(patches(), timeout_s=5.0)))
    slow.start()
    assert inside.wait(5)
    assert inspector.infer(patches(), timeout_s=5.0).model_version == 1  # failed on channel 0, reconnected
    assert len(clients) == 2 and not clients[0].closed  # retired, not closed: the slow call still uses it
    release.set()
    slow.join(5)
    assert results and results[0].model_version == 1
    assert clients[0].closed  # closed by its last user


def test_a_closed_channel_error_is_retried_not_raised(fake: type[FakeClient]) -> None:
    fake.script = [ValueError("Cannot invoke RPC on closed channel!"), FakeResponse(60, 8, "1")]
    assert TritonInspector("x:1").infer(patches(), timeout_s=5.0).model_version == 1


def metadata(datatype: str, side: int = 8) -> dict[str, Any]:
    return {"inputs": [{"name": "patches", "datatype": datatype, "shape": ["-1", str(side), str(side), "1"]}]}


class Seen(FakeClient):
    """Records what each infer sent: the input's datatype and bytes, the outputs asked for, the version."""

    calls: list[dict[str, Any]] = []

    def infer(self, model: str, inputs: list[Any], outputs: Any = None, client_timeout: float = 0, **kw: Any) -> Any:
        Seen.calls.append({"datatype": inputs[0].datatype(), "bytes": inputs[0]._get_content(),
                           "outputs": [o.name() for o in outputs], "version": kw.get("model_version")})
        return super().infer(model, inputs, outputs, client_timeout, **kw)


@pytest.fixture()
def seen(monkeypatch: pytest.MonkeyPatch) -> type[Seen]:
    monkeypatch.setattr(module.grpcclient, "InferenceServerClient", Seen)
    Seen.script, Seen.calls = [], []
    return Seen


def pixels(n: int = 60, side: int = 8) -> np.ndarray:
    return np.random.default_rng(0).integers(0, 256, (n, side, side, 1), dtype=np.uint8)


def test_camera_pixels_go_as_they_are_to_a_version_that_scales_them(seen: type[Seen]) -> None:
    seen.script = [metadata("UINT8"), FakeResponse(60, 8, "4")]
    raw = pixels()
    result = TritonInspector("x:1").infer(raw, timeout_s=1.0)
    assert seen.calls[0]["datatype"] == "UINT8" and seen.calls[0]["bytes"] == raw.tobytes()
    assert result.heatmaps is None and seen.calls[0]["outputs"] == ["score", "phi"]  # no heatmap bytes back


def test_camera_pixels_are_scaled_with_patchings_division_for_a_float_version(seen: type[Seen]) -> None:
    from vialguard.patching import to_unit_float

    seen.script = [metadata("FP32"), FakeResponse(60, 8, "3")]
    raw = pixels()
    TritonInspector("x:1").infer(raw, timeout_s=1.0)
    assert seen.calls[0]["datatype"] == "FP32" and seen.calls[0]["bytes"] == to_unit_float(raw).tobytes()


def test_pixels_of_another_bit_depth_are_refused_before_sending(seen: type[Seen]) -> None:
    seen.script = [metadata("UINT8")]
    with pytest.raises(InferenceRejected, match="UINT8 camera pixels.*uint16"):
        TritonInspector("x:1").infer(pixels().astype(np.uint16), timeout_s=1.0)
    assert not seen.calls


def test_heatmaps_are_asked_apart_from_the_version_that_scored(seen: type[Seen]) -> None:
    seen.script = [metadata("UINT8"), {"config": {"parameters": {"heatmap_graph": {"string_value": "true"}}}},
                   FakeResponse(3, 8, "4")]
    inspector = TritonInspector("x:1")
    assert inspector.heatmaps_apart()
    heat = inspector.heatmaps(pixels(3), model_version=4, timeout_s=1.0)
    assert heat.shape == (3, 8, 8, 1)
    assert seen.calls[0]["outputs"] == ["heatmap"] and seen.calls[0]["version"] == "4"


def test_a_version_without_a_heatmap_graph_says_so(seen: type[Seen]) -> None:
    seen.script = [metadata("FP32")]
    assert not TritonInspector("x:1").heatmaps_apart()
