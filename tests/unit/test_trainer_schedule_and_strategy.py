"""Learning-rate restarts at 1/3 of the last maximum; strategy and precision from the hardware."""
from __future__ import annotations

import json
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import pytest

from trainer.config import ConfigError, TrainConfig
from trainer.schedule import learning_rate_schedule, make_optimizer
from trainer.strategy import is_chief, precision_policy, strategy_kind


def test_cosine_schedule_restarts_at_a_third_of_the_last_maximum() -> None:
    cfg = TrainConfig(restart_samples=3200, batch_size=32)  # period: 100 steps
    lr = learning_rate_schedule(cfg)
    assert float(lr(0)) == pytest.approx(1.5e-4)
    assert float(lr(50)) == pytest.approx(0.75e-4, rel=1e-3)  # half-way down the cosine
    assert float(lr(99)) < 1e-6
    assert float(lr(100)) == pytest.approx(0.5e-4, rel=1e-4)
    assert float(lr(200)) == pytest.approx(0.5e-4 / 3, rel=1e-4)


def test_optimizer_is_adam_on_the_schedule() -> None:
    opt = make_optimizer(TrainConfig())
    assert type(opt).__name__ == "Adam"
    assert float(opt.learning_rate) == pytest.approx(1.5e-4)


WORKERS = {"cluster": {"worker": ["h1:2222", "h2:2222"]}, "task": {"type": "worker", "index": 1}}


def test_tf_config_selects_multi_worker_mirrored_strategy() -> None:
    assert strategy_kind(json.dumps(WORKERS), gpu_count=0) == "multi_worker"
    assert strategy_kind(json.dumps(WORKERS), gpu_count=4) == "multi_worker"


def test_several_local_gpus_select_mirrored_strategy_and_one_the_default() -> None:
    assert strategy_kind(None, gpu_count=2) == "mirrored"
    assert strategy_kind("", gpu_count=1) == "default"
    assert strategy_kind(None, gpu_count=0) == "default"


@pytest.mark.parametrize("raw", ["{not json", '{"task": {"type": "worker", "index": 0}}', '{"cluster": {"worker": ["a:1"]}}'])
def test_malformed_tf_config_is_reported_not_ignored(raw: str) -> None:
    with pytest.raises(ConfigError, match="TF_CONFIG"):
        strategy_kind(raw, gpu_count=0)


def test_only_worker_zero_or_the_chief_writes_checkpoints() -> None:
    assert is_chief(None)
    assert not is_chief(json.dumps(WORKERS))
    assert is_chief(json.dumps({**WORKERS, "task": {"type": "worker", "index": 0}}))
    with_chief = {"cluster": {"chief": ["c:1"], "worker": ["w:1"]}, "task": {"type": "worker", "index": 0}}
    assert not is_chief(json.dumps(with_chief))


def test_mixed_precision_only_when_a_gpu_is_present() -> None:
    assert precision_policy("auto", 1) == "mixed_float16"
    assert precision_policy("auto", 0) == "float32"
    assert precision_policy("float32", 8) == "float32"
