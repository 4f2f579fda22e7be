"""Admission control's own rules: a bounded number of slots, a wait no longer than the call can afford."""
from __future__ import annotations

import threading
import time

import pytest

from preprocessor.admission import Admission, Shed
from preprocessor.config import PreprocessorConfig, from_env
from preprocessor.deadline import Deadline


def deadline(seconds: float) -> Deadline:
    return Deadline(time.monotonic() + seconds)


def test_a_free_slot_is_taken_and_given_back() -> None:
    admission = Admission(slots=1, max_wait_s=0.0)
    with admission.slot(deadline(1.0)):
        pass
    with admission.slot(deadline(1.0)):  # given back: available again
        pass
    assert admission.shed_count == 0 and admission.expected_inference_s() >= 0.0


def test_the_call_beyond_the_slots_is_shed_at_once_saying_why() -> None:
    admission = Admission(slots=1, max_wait_s=0.05)
    holding, release = threading.Event(), threading.Event()

    def hold() -> None:
        with admission.slot(deadline(5.0)):
            holding.set()
            release.wait(5)

    worker = threading.Thread(target=hold)
    worker.start()
    assert holding.wait(5)
    started = time.monotonic()
    with pytest.raises(Shed, match="limit of 1 acquisitions in inference.*nothing was queued"):
        with admission.slot(deadline(5.0)):
            pass
    assert time.monotonic() - started < 0.5  # at most max_wait_s, not the deadline
    release.set()
    worker.join(5)
    assert admission.shed_count == 1


def test_a_call_waits_no_longer_than_its_deadline_leaves_for_inference() -> None:
    admission = Admission(slots=1, max_wait_s=10.0)
    admission.record(0.5)  # inference takes about 0.5 s now
    with admission.slot(deadline(5.0)):
        started = time.monotonic()
        with pytest.raises(Shed):
            with admission.slot(deadline(0.6)):  # 0.6 s left: it can afford to wait about 0.1 s
                pass
        assert time.monotonic() - started < 0.4


def test_admission_settings_and_secure_defaults() -> None:
    config = PreprocessorConfig()
    assert config.host == "127.0.0.1" and not config.reflection and config.max_inflight == 2
    assert from_env({"PREPROCESSOR_REFLECTION": "true", "PREPROCESSOR_MAX_INFLIGHT": "4"}).reflection
    with pytest.raises(ValueError, match="go together"):
        PreprocessorConfig(tls_cert_file="a.pem")
    with pytest.raises(ValueError, match="mutual TLS"):
        PreprocessorConfig(tls_client_ca_file="ca.pem")
    with pytest.raises(ValueError, match="not a valid bool"):
        from_env({"PREPROCESSOR_REFLECTION": "maybe"})
