"""The preprocessor's Inspector on Triton: KServe v2 gRPC to the `inspector` model.

Implements vialguard.inference.Inspector. What it adds to a bare tritonclient call:
- the version that answered comes from Triton's response, never from a guess, so
  the aggregator applies that version's thresholds (DESIGN invariant 3);
- every call runs against the caller's deadline (gRPC client timeout);
- a restarted or briefly unreachable server is retried on a fresh channel, as
  often as the deadline allows, instead of waiting out gRPC's reconnect backoff;
  the old channel is closed only once no call uses it any more (closing it under
  a call in flight turned an outage into INTERNAL "closed channel" errors);
- the deadline travels to Triton three times: as the request's queue timeout (for a
  Triton whose queue policy honours it), as the gRPC deadline, and as the wall-clock
  deadline parameter that the version's backend adapter checks before inferring
  (vialguard.triton_backend.model: a request whose caller has gone is never run,
  which Triton 2.51 does not ensure for a timed-out sync call);
- Triton's own refusals keep their meaning: a full queue is InferenceOverloaded
  (shed, not retried), a request timed out in Triton's queue is InferenceTimeout;
- outputs are checked to be whole: a Triton backend environment with numpy >= 2
  answers with empty tensors, and that must never pass as "no anomaly";
- patches travel as the served version wants them (its model metadata names the
  input's datatype): the camera's uint8/uint16 pixels to a version that scales them
  in its graph (a quarter of float32's bytes for MONO8), float32 in [0, 1] to an
  older version, scaled here by vialguard.patching.to_unit_float, the same bits;
- on the same host as Triton the patches can travel through system shared memory
  (preprocessor.shared_inputs), gRPC staying the fallback for every call that
  cannot use it;
- only score and phi come back by default; the heatmap is asked for apart
  (``heatmaps``, pinned to the version that scored), for the acquisitions an
  operator will look at: a good acquisition moves no heatmap bytes.
Everything that goes wrong ends as InferenceUnavailable with a plain message.
"""
from __future__ import annotations

import threading
import time

import numpy as np
import tritonclient.grpc as grpcclient
from tritonclient.utils import InferenceServerException

from preprocessor.shared_inputs import SharedInputs
from vialguard.inference import InferenceOverloaded, InferenceResult, InferenceTimeout, InferenceUnavailable
from vialguard.inspector_io import (DATATYPE_FP32, DEADLINE_PARAMETER, HEATMAP_GRAPH_PARAMETER, INPUT_PATCHES, MODEL_NAME, NUMPY_DTYPE, OUTPUT_HEATMAP, OUTPUT_PHI,
                                    OUTPUT_SCORE)
from vialguard.patching import to_unit_float

WIRE_DATATYPE = {numpy_name: datatype for datatype, numpy_name in NUMPY_DTYPE.items()}
RETRYABLE = ("StatusCode.UNAVAILABLE",)  # server down, restarting, or between two versions
RETRY_PAUSE_S = 0.05
METADATA_TIMEOUT_S = 5.0
# Triton's queue policy answers UNAVAILABLE with these words (Triton 2.51); they are
# load, not an outage: retrying or reconnecting would only add to it.
QUEUE_FULL_WORDS = ("exceeds maximum queue size",)
QUEUE_TIMEOUT_WORDS = ("request timeout expired", "timeout expired", "deadline passed")
# Triton's queue timeout is the deadline less this: the answer must come back before the caller's end.
QUEUE_TIMEOUT_MARGIN_S = 0.005


class _Channel:
    """One tritonclient channel and the number of calls using it: closed when retired and unused."""

    def __init__(self, url: str) -> None:
        self.client = grpcclient.InferenceServerClient(url)
        self.users = 0
        self.retired = False


class InferenceRejected(InferenceUnavailable):
    """Triton refused these patches (shape, dtype, value range) for the version it serves."""


class TritonInspector:
    """Scores patches with Triton's `inspector`; thread-safe, one gRPC channel shared by callers."""

    def __init__(self, url: str, model_name: str = MODEL_NAME, max_attempts: int = 5,
                 shared: SharedInputs | None = None) -> None:
        self.url = url
        self.shared = shared
        self.model_name = model_name
        self.max_attempts = max_attempts
        self._lock = threading.Lock()
        self._channel = _Channel(url)
        self._input: tuple[int, str, bool] | None = None  # (patch side, datatype, heatmap graph) of the served version
        self._served_version: int | None = None

    def patch_size(self) -> int:
        """Patch side the served version expects (from its model metadata), cached per version."""
        return self._served_input()[0]

    def input_datatype(self) -> str:
        """KServe datatype of the served version's patches: UINT8/UINT16 pixels or FP32 in [0, 1]."""
        return self._served_input()[1]

    def heatmaps_apart(self) -> bool:
        """Whether the served version answers the heatmaps of a few patches (it ships heatmap.onnx).

        Where it does not (version 3 and older), heatmaps of the whole acquisition cost a
        whole second inference; a caller then asks for them in the scoring call instead.
        """
        return self._served_input()[2]

    def infer(self, patches: np.ndarray, timeout_s: float, heatmaps: bool = False) -> InferenceResult:
        """Score patches [N, P, P, 1] (camera pixels, or float32 in [0, 1]) within `timeout_s` seconds.

        ``heatmaps``: also bring the heatmap back in the same call (a caller that
        knows beforehand it will keep them); otherwise ``result.heatmaps`` is None.
        """
        tensor_data = self._wire_patches(patches)
        deadline = time.monotonic() + timeout_s
        names = (OUTPUT_SCORE, OUTPUT_PHI, OUTPUT_HEATMAP) if heatmaps else (OUTPUT_SCORE, OUTPUT_PHI)
        response = self._infer(tensor_data, names, deadline, f"scoring {len(patches)} patches", None)
        return self._result(response, tensor_data.shape, heatmaps)

    def heatmaps(self, patches: np.ndarray, model_version: int, timeout_s: float) -> np.ndarray:
        """The heatmaps [N, P, P, 1] float32 of patches that ``model_version`` scored, from that version only."""
        tensor_data = self._wire_patches(patches)
        response = self._infer(tensor_data, (OUTPUT_HEATMAP,), time.monotonic() + timeout_s,
                               f"the heatmaps of {len(patches)} patches", model_version)
        heatmaps = response.as_numpy(OUTPUT_HEATMAP)
        if heatmaps is None or heatmaps.size != tensor_data.size:
            raise InferenceUnavailable(f"Triton's '{self.model_name}' version {model_version} answered the heatmaps "
                                       f"of {len(patches)} patches with {None if heatmaps is None else heatmaps.shape}")
        return heatmaps.reshape(tensor_data.shape).astype(np.float32, copy=False)

    def _served_input(self) -> tuple[int, str, bool]:
        if self._input is None:
            deadline = time.monotonic() + METADATA_TIMEOUT_S
            metadata = self._call(lambda c, t: c.get_model_metadata(self.model_name, as_json=True, client_timeout=t),
                                  deadline, "reading the model metadata")
            config = self._call(lambda c, t: c.get_model_config(self.model_name, as_json=True, client_timeout=t),
                                deadline, "reading the model config")
            parameters = (config.get("config") or {}).get("parameters") or {}
            heatmap_graph = (parameters.get(HEATMAP_GRAPH_PARAMETER) or {}).get("string_value") == "true"
            self._input = (*_input_of(metadata, self.model_name), heatmap_graph)
        return self._input

    def _wire_patches(self, patches: np.ndarray) -> np.ndarray:
        """The patches as the served version takes them; a view when they already are (no copy).

        Float patches go as FP32 (a version taking pixels refuses them, INVALID_ARGUMENT);
        camera pixels go as they are, or scaled here for an FP32 version (the served
        version's metadata says which, read once per version).
        """
        if patches.dtype.kind != "u":
            return np.ascontiguousarray(patches, dtype=np.float32)
        datatype = self.input_datatype()
        if datatype == DATATYPE_FP32:  # an older version: scaled here, with patching's own division
            return to_unit_float(np.ascontiguousarray(patches))
        if patches.dtype != np.dtype(NUMPY_DTYPE[datatype]):
            self._input = None  # a version change is the likely cause: read the metadata again next time
            raise InferenceRejected(
                f"Triton's '{self.model_name}' takes {datatype} camera pixels, but these patches are {patches.dtype} "
                f"(a recipe of another bit depth?)")
        return np.ascontiguousarray(patches)

    def _infer(self, data: np.ndarray, names: tuple[str, ...], deadline: float, what: str,
               version: int | None) -> grpcclient.InferResult:
        datatype = WIRE_DATATYPE[data.dtype.name]

        def request(client: grpcclient.InferenceServerClient, remaining: float) -> grpcclient.InferResult:
            outputs = [grpcclient.InferRequestedOutput(name) for name in names]
            queue_timeout_us = max(1, int((remaining - QUEUE_TIMEOUT_MARGIN_S) * 1_000_000))

            def send(tensor: grpcclient.InferInput) -> grpcclient.InferResult:
                return client.infer(self.model_name, [tensor], model_version="" if version is None else str(version),
                                    outputs=outputs, timeout=queue_timeout_us, client_timeout=remaining,
                                    parameters={DEADLINE_PARAMETER: time.time_ns() + int(remaining * 1e9)})

            if self.shared is not None and data.nbytes <= self.shared.region_bytes:
                with self.shared.lease(client) as region:  # held until Triton has answered
                    if region is not None:
                        region.write(data)
                        tensor = grpcclient.InferInput(INPUT_PATCHES, list(data.shape), datatype)
                        tensor.set_shared_memory(region.name, data.nbytes)
                        try:
                            return send(tensor)
                        except InferenceServerException as exc:
                            if "shared memory" not in (exc.message() or "").lower():
                                raise
                            self.shared.invalidate()  # a restarted Triton forgot it: this call goes by gRPC
            tensor = grpcclient.InferInput(INPUT_PATCHES, list(data.shape), datatype)
            tensor.set_data_from_numpy(data)
            return send(tensor)

        try:
            return self._call(request, deadline, what)
        except InferenceRejected:
            self._input = None  # a new version may expect another patch side or datatype
            raise

    def close(self) -> None:
        with self._lock:
            self._channel.retired = True
            if self._channel.users == 0:
                self._channel.client.close()

    def _result(self, response: grpcclient.InferResult, shape: tuple[int, ...], with_heatmaps: bool) -> InferenceResult:
        scores, heatmaps = response.as_numpy(OUTPUT_SCORE), response.as_numpy(OUTPUT_HEATMAP)
        phi = response.as_numpy(OUTPUT_PHI)
        version = int(response.get_response().model_version)
        heatmaps_whole = not with_heatmaps or (heatmaps is not None and heatmaps.size == int(np.prod(shape)))
        if scores is None or scores.size != shape[0] or not heatmaps_whole:
            got = [None if a is None else list(a.shape) for a in (scores, heatmaps)]
            raise InferenceUnavailable(
                f"Triton's '{self.model_name}' version {version} answered {len(shape) and shape[0]} patches with "
                f"outputs of shapes {got}; empty outputs mean its backend environment has numpy >= 2 "
                f"(rebuild .venv-triton with scripts/setup_triton.sh)"
            )
        if version != self._served_version:
            self._served_version, self._input = version, None
        return InferenceResult(
            scores=scores.reshape(shape[0]).astype(np.float32, copy=False),
            heatmaps=heatmaps.reshape(shape).astype(np.float32, copy=False) if with_heatmaps else None,
            model_name=self.model_name,
            model_version=version,
            phi=None if phi is None or phi.size != shape[0] else phi.reshape(shape[0]).astype(np.float32, copy=False),
        )

    def _call(self, call, deadline: float, what: str):  # type: ignore[no-untyped-def]
        """Run `call(client, remaining_s)`; on a dropped connection retry on a new channel until the deadline."""
        last, attempts, timed_out = "the deadline had already passed", 0, False
        while attempts < self.max_attempts:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            channel, attempts = self._lease(), attempts + 1
            try:
                return call(channel.client, remaining)
            except InferenceServerException as exc:
                status, last = str(exc.status()), exc.message() or str(exc)
                words = last.lower()
                if status == "StatusCode.INVALID_ARGUMENT":
                    raise InferenceRejected(f"Triton's '{self.model_name}' refused the patches: {last}") from exc
                if any(w in words for w in QUEUE_FULL_WORDS):
                    raise InferenceOverloaded(f"Triton's queue for '{self.model_name}' is full: {last}") from exc
                if status == "StatusCode.DEADLINE_EXCEEDED" or any(w in words for w in QUEUE_TIMEOUT_WORDS):
                    timed_out = True
                    break
                if status not in RETRYABLE:
                    raise InferenceUnavailable(f"Triton at {self.url} failed {what}: {status} {last}") from exc
                self._reconnect(channel)
            except ValueError as exc:  # grpc: "Cannot invoke RPC on closed channel!" (closed by close())
                last = str(exc)
                self._reconnect(channel)
            finally:
                self._give_back(channel)
            time.sleep(min(RETRY_PAUSE_S, max(0.0, deadline - time.monotonic())))
        if timed_out or deadline - time.monotonic() <= 0:
            raise InferenceTimeout(
                f"Triton at {self.url} did not finish {what} within the deadline ({attempts} attempts): {last}")
        raise InferenceUnavailable(
            f"Triton at {self.url} did not answer {what} within the deadline ({attempts} attempts): {last}"
        )

    def _lease(self) -> _Channel:
        with self._lock:
            channel = self._channel
            channel.users += 1
            return channel

    def _give_back(self, channel: _Channel) -> None:
        with self._lock:
            channel.users -= 1
            close = channel.retired and channel.users == 0
        if close:
            channel.client.close()

    def _reconnect(self, broken: _Channel) -> None:
        """A fresh channel, so a restarted server is reached at once, not after gRPC's backoff.

        The broken one is retired, not closed: other calls may still be on it, and
        each of them must end with Triton's own status, never "closed channel".
        The last user closes it (``_give_back``).
        """
        with self._lock:
            if self._channel is broken:
                broken.retired = True
                self._channel = _Channel(self.url)


def _input_of(metadata: dict, model_name: str) -> tuple[int, str]:  # type: ignore[type-arg]
    """(patch side, datatype) of the served version's ``patches`` input."""
    inputs = {tensor["name"]: tensor for tensor in metadata.get("inputs", [])}
    if INPUT_PATCHES not in inputs:
        raise InferenceUnavailable(f"Triton's '{model_name}' has no input '{INPUT_PATCHES}': {metadata}")
    datatype = str(inputs[INPUT_PATCHES].get("datatype", DATATYPE_FP32))
    if datatype not in NUMPY_DTYPE:
        raise InferenceUnavailable(f"Triton's '{model_name}' takes {datatype} patches; this client sends "
                                   f"{sorted(NUMPY_DTYPE)}")
    side = int(inputs[INPUT_PATCHES]["shape"][-2])
    if side <= 0:
        raise InferenceUnavailable(
            f"Triton serves '{model_name}' without a pinned version, so its patch size is unknown; "
            f"roll a version out: python -m vialguard_stack.rollout --version N"
        )
    return side, datatype
