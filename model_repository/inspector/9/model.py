"""Triton Python-backend adapter for the `inspector` model: the version's ONNX under ONNX Runtime.

This file is copied into every version directory (Triton's Python backend loads
``<model>/<version>/model.py`` and nothing else), so a version carries the exact
adapter it was validated with. It runs in Triton's own small environment
(.venv-triton: numpy < 2, onnxruntime) and imports nothing from vialguard.

Thin on purpose: everything fixed for a version (session, tensor names, patch
shape) is built once in ``initialize``; ``execute`` converts, runs, answers. The
tensor names come from the model configuration (tested against
vialguard.inspector_io) and are checked against the ONNX graph at load time, so
a mismatch fails the load, never a request. A bad request fails only its own
response (INVALID_ARG); requests are run one by one so that one bad acquisition
never fails another's.

The input's dtype is the graph's: float32 patches in [0, 1] (older versions,
resampled profiles) or the camera's uint8/uint16 pixels that the graph scales
itself; the config the rollout loads must say the same (checked at load). Only the
outputs a request asks for are sent: the preprocessor asks for score and phi, and
for the heatmaps of a rejected acquisition's flagged patches apart; a version that
ships heatmap.onnx answers those from that subgraph, for any number of patches.

No work for a caller that has gone (DESIGN invariant 8): a request whose caller has
cancelled it, or whose caller's deadline (the request parameter ``deadline_unix_ns``,
wall-clock nanoseconds, vialguard.inspector_io.DEADLINE_PARAMETER) passed while it
waited in Triton's queue, is answered at once with an error and never inferred.
Triton 2.51 alone does not ensure it: a tritonclient sync call that times out is not
cancelled on the server (triton-inference-server/server#7532), and a burst of 30 with
a 1.26 s deadline ran 11 inferences, 9 of them for callers already gone. The deadline is
compared on Triton's clock: the same clock for a Triton on the preprocessor's host or
in a container beside it; a remote Triton needs synchronised clocks (a Triton whose
clock runs ahead of the preprocessor's by more than the deadline refuses every request,
and says so; parameter ``honour_caller_deadline`` "0" turns the check off). Each
request answered so counts in Triton's metrics as
``vialguard_inspector_not_inferred_total{reason="cancelled"|"deadline"}``.
"""
import json
import os
import time

import numpy as np
import onnxruntime as ort
import triton_python_backend_utils as pb_utils

ONNX_FILENAME = "model.onnx"
HEATMAP_ONNX_FILENAME = "heatmap.onnx"  # patches -> heatmap only, any number of patches (newer versions)
HEATMAP = "heatmap"
DEADLINE_PARAMETER = "deadline_unix_ns"  # = vialguard.inspector_io.DEADLINE_PARAMETER (tested)
NOT_INFERRED_METRIC = "vialguard_inspector_not_inferred_total"  # = vialguard.inspector_io's (tested)
NOT_INFERRED_REASONS = ("cancelled", "deadline")
MANIFEST_FILENAME = "version.json"
# ONNX Runtime's input type -> (numpy dtype, Triton config data_type)
INPUT_TYPES = {"tensor(float)": (np.float32, "TYPE_FP32"), "tensor(uint8)": (np.uint8, "TYPE_UINT8"),
               "tensor(uint16)": (np.uint16, "TYPE_UINT16")}


class TritonPythonModel:
    def initialize(self, args):
        config = json.loads(args["model_config"])
        version_dir = os.path.join(args["model_repository"], args["model_version"])
        onnx_path = os.path.join(version_dir, ONNX_FILENAME)
        if not os.path.isfile(onnx_path):
            raise pb_utils.TritonModelException(f"inspector version dir {version_dir} has no {ONNX_FILENAME}")
        self.input_name = config["input"][0]["name"]
        self.output_names = [out["name"] for out in config["output"]]
        params = {k: v["string_value"] for k, v in config.get("parameters", {}).items()}
        self.honour_deadline = params.get("honour_caller_deadline", "1") != "0"
        self.metric_family, self.not_inferred = self._not_inferred_counters(args["model_version"])
        options = ort.SessionOptions()
        options.intra_op_num_threads = int(params.get("intra_op_num_threads", "0"))
        if "allow_spinning" in params:  # "0": idle ORT threads sleep instead of spinning
            options.add_session_config_entry("session.intra_op.allow_spinning", params["allow_spinning"])
        self.session = ort.InferenceSession(onnx_path, options, providers=["CPUExecutionProvider"])
        heatmap_path = os.path.join(version_dir, HEATMAP_ONNX_FILENAME)
        self.heatmap_session = (ort.InferenceSession(heatmap_path, options, providers=["CPUExecutionProvider"])
                                if os.path.isfile(heatmap_path) else None)
        onnx_inputs = [i.name for i in self.session.get_inputs()]
        onnx_outputs = [o.name for o in self.session.get_outputs()]
        if onnx_inputs != [self.input_name] or sorted(onnx_outputs) != sorted(self.output_names):
            raise pb_utils.TritonModelException(
                f"{onnx_path} has inputs {onnx_inputs} / outputs {onnx_outputs}, "
                f"but the model config names {[self.input_name]} / {self.output_names}"
            )
        # [N, P, P, 1]: the patch side is fixed when the version is exported.
        onnx_input = self.session.get_inputs()[0]
        self.patch_shape = tuple(onnx_input.shape[1:])
        if onnx_input.type not in INPUT_TYPES:
            raise pb_utils.TritonModelException(f"{onnx_path} takes {onnx_input.type}; expected float, uint8 or uint16")
        self.input_dtype, wanted = INPUT_TYPES[onnx_input.type]
        declared = config["input"][0].get("data_type")
        if declared != wanted:
            raise pb_utils.TritonModelException(
                f"{onnx_path} takes {onnx_input.type} patches but the model config declares {declared}; "
                f"load this version with the rollout (python -m vialguard_stack.rollout), which writes "
                f"the version's own input type into the config")
        # A version with a local score fuses the frames of one acquisition by patch position:
        # its requests must be whole acquisitions (version.json names the layout).
        self.group = 1
        manifest_path = os.path.join(version_dir, MANIFEST_FILENAME)
        if os.path.isfile(manifest_path):
            with open(manifest_path) as f:
                layout = json.load(f).get("patch_layout") or {}
            if layout:
                self.group = int(layout["frames"]) * int(layout["vials"]) * int(layout["regions"])

    def execute(self, requests):
        return [self._answer(request) for request in requests]

    def _answer(self, request):
        reason, gone = self._caller_gone(request)
        if gone:
            counter = self.not_inferred.get(reason)
            if counter is not None:
                try:
                    counter.increment(1)
                except Exception:  # a metric must never fail a request
                    pass
            return pb_utils.InferenceResponse(
                output_tensors=[], error=pb_utils.TritonError(gone, pb_utils.TritonError.CANCELLED))
        patches = pb_utils.get_input_tensor_by_name(request, self.input_name).as_numpy()
        asked = [name for name in request.requested_output_names() if name in self.output_names]
        names = asked or self.output_names  # Triton asks for every output when the client names none
        session = self.heatmap_session if names == [HEATMAP] and self.heatmap_session is not None else self.session
        problem = self._problem_with(patches, whole_acquisitions=session is self.session)
        if problem:
            error = pb_utils.TritonError(problem, pb_utils.TritonError.INVALID_ARG)
            return pb_utils.InferenceResponse(output_tensors=[], error=error)
        try:
            outputs = session.run(names, {self.input_name: patches})
        except Exception as exc:  # an ORT failure belongs to this request only
            return pb_utils.InferenceResponse(output_tensors=[], error=pb_utils.TritonError(f"inspector failed: {exc}"))
        tensors = [pb_utils.Tensor(name, np.ascontiguousarray(value)) for name, value in zip(names, outputs)]
        return pb_utils.InferenceResponse(output_tensors=tensors)

    @staticmethod
    def _not_inferred_counters(version):
        """(family, reason -> counter) in Triton's metrics; the family must outlive its counters, so the
        model keeps both (None, {} where this Triton has its metrics turned off)."""
        try:
            family = pb_utils.MetricFamily(
                name=NOT_INFERRED_METRIC, kind=pb_utils.MetricFamily.COUNTER,
                description="inspector requests answered with an error, not inferred, because their caller had gone")
            return family, {reason: family.Metric(labels={"reason": reason, "version": str(version)})
                            for reason in NOT_INFERRED_REASONS}
        except Exception:  # metrics disabled: the check still holds, it is only not counted
            return None, {}

    def _caller_gone(self, request):
        """(reason, why) this request's caller no longer waits for it (why '' if it may): before any work."""
        if request.is_cancelled():
            return "cancelled", "the caller cancelled this request while it waited in Triton's queue: not inferred"
        if not self.honour_deadline:
            return "", ""
        try:
            deadline_ns = int(json.loads(request.parameters() or "{}").get(DEADLINE_PARAMETER, 0))
        except (TypeError, ValueError):
            return "", ""  # a malformed or absent deadline: the request runs, as one without it would
        late_ms = (time.time_ns() - deadline_ns) / 1e6 if deadline_ns else 0.0
        if late_ms <= 0:
            return "", ""
        return "deadline", (f"the caller's deadline passed {late_ms:.0f} ms before its turn in Triton's queue: "
                            f"deadline passed, not inferred (if every request says this, Triton's clock runs "
                            f"ahead of the caller's: synchronise them)")

    def _problem_with(self, patches, whole_acquisitions=True):
        """Why this request cannot be scored, in words a line engineer can act on ('' if it can)."""
        if patches.dtype != self.input_dtype:
            return f"this model version takes {np.dtype(self.input_dtype).name} patches, got {patches.dtype}"
        if patches.ndim != 4 or patches.shape[0] == 0:
            return f"patches must be [N, P, P, 1] with N >= 1, got shape {list(patches.shape)}"
        if whole_acquisitions and patches.shape[0] % self.group:
            return (f"this model version scores whole acquisitions of {self.group} patches in patch order, "
                    f"got {patches.shape[0]} patches")
        expected = tuple(d if isinstance(d, int) else None for d in self.patch_shape)
        if any(e is not None and e != got for e, got in zip(expected, patches.shape[1:])):
            return f"this model version scores patches of shape {list(self.patch_shape)}, got {list(patches.shape[1:])}"
        if self.input_dtype != np.float32:
            return ""  # every uint8/uint16 value is a pixel the graph scales into [0, 1]
        low, high = float(patches.min()), float(patches.max())  # NaN propagates: no extra pass
        if np.isnan(low) or np.isnan(high):
            return "patches contain NaN values"
        if not (0.0 <= low and high <= 1.0):
            return f"patch values must lie in [0, 1], got [{low:.3g}, {high:.3g}]"
        return ""
