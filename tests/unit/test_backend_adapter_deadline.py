"""The backend adapter never infers a request whose caller has gone (DESIGN invariant 8).

model.py runs inside Triton's Python backend, whose `triton_python_backend_utils`
exists only there: a small stand-in module plays it here, so that the adapter's own
decision (cancelled, deadline passed, deadline ahead, no deadline) is tested without
a server. The real Triton case is tests/integration/test_triton_admission.py.
"""
from __future__ import annotations

import json
import sys
import time
import types
from typing import Any

import pytest

from vialguard.inspector_io import DEADLINE_PARAMETER, NOT_INFERRED_METRIC
from vialguard.triton_backend import triton_backend_files


class _TritonError(Exception):
    CANCELLED, INVALID_ARG = "CANCELLED", "INVALID_ARG"

    def __init__(self, message: str, code: str = "INTERNAL") -> None:
        super().__init__(message)
        self.message, self.code = message, code


class _Response:
    def __init__(self, output_tensors: list[Any], error: _TritonError | None = None) -> None:
        self.output_tensors, self.error = output_tensors, error


@pytest.fixture
def adapter(monkeypatch: pytest.MonkeyPatch) -> Any:
    pb_utils = types.ModuleType("triton_python_backend_utils")
    pb_utils.TritonError = _TritonError  # type: ignore[attr-defined]
    pb_utils.InferenceResponse = _Response  # type: ignore[attr-defined]
    pb_utils.get_input_tensor_by_name = lambda request, name: pytest.fail("a gone caller's patches were read")  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "triton_python_backend_utils", pb_utils)
    module = types.ModuleType("inspector_model")
    exec(compile(triton_backend_files()["model.py"].decode(), "model.py", "exec"), module.__dict__)
    model = module.TritonPythonModel.__new__(module.TritonPythonModel)  # no ONNX session: nothing may run
    model.honour_deadline = True
    model.not_inferred = {"cancelled": _Counter(), "deadline": _Counter()}
    return model


class _Counter:
    def __init__(self) -> None:
        self.value = 0

    def increment(self, by: int) -> None:
        self.value += by


class _Request:
    def __init__(self, parameters: dict[str, Any] | None = None, cancelled: bool = False) -> None:
        self._parameters, self._cancelled = parameters, cancelled

    def is_cancelled(self) -> bool:
        return self._cancelled

    def parameters(self) -> str:
        return json.dumps(self._parameters or {})


def test_the_adapter_names_the_parameter_and_metric_of_inspector_io() -> None:
    source = triton_backend_files()["model.py"].decode()
    assert f'DEADLINE_PARAMETER = "{DEADLINE_PARAMETER}"' in source
    assert f'NOT_INFERRED_METRIC = "{NOT_INFERRED_METRIC}"' in source


def test_a_request_past_its_callers_deadline_is_answered_with_an_error_not_inferred(adapter: Any) -> None:
    late = _Request({DEADLINE_PARAMETER: time.time_ns() - 250_000_000})
    response = adapter._answer(late)
    assert response.output_tensors == [] and response.error.code == _TritonError.CANCELLED
    assert "deadline passed" in response.error.message and "ms before its turn" in response.error.message
    assert adapter.not_inferred["deadline"].value == 1 and adapter.not_inferred["cancelled"].value == 0


def test_a_cancelled_request_is_answered_with_an_error_not_inferred(adapter: Any) -> None:
    response = adapter._answer(_Request({DEADLINE_PARAMETER: time.time_ns() + 10**10}, cancelled=True))
    assert response.error.code == _TritonError.CANCELLED and "cancelled" in response.error.message
    assert adapter.not_inferred["cancelled"].value == 1


@pytest.mark.parametrize("deadline", ["in 10 s", None, "x"])
def test_a_request_with_time_left_or_without_a_deadline_may_run(adapter: Any, deadline: str | None) -> None:
    value = time.time_ns() + 10**10 if deadline == "in 10 s" else deadline  # taken when the test runs
    parameters = {} if value is None else {DEADLINE_PARAMETER: value}
    assert adapter._caller_gone(_Request(parameters))[1] == ""


def test_the_check_can_be_turned_off_for_a_remote_triton_with_another_clock(adapter: Any) -> None:
    adapter.honour_deadline = False
    assert adapter._caller_gone(_Request({DEADLINE_PARAMETER: time.time_ns() - 10**9}))[1] == ""
