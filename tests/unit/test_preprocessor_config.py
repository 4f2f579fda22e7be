"""Preprocessor settings: one set of defaults, overridden by environment then command line, checked at start."""
from __future__ import annotations

import time

import pytest

from preprocessor.config import MIB, PreprocessorConfig, parse_args
from preprocessor.deadline import Deadline
from preprocessor.server import check_message_limit, largest_acquisition_bytes
from vialguard.recipe import load_recipe


def test_command_line_overrides_environment_which_overrides_defaults() -> None:
    env = {"VIALGUARD_DEADLINE_MS": "300", "PREPROCESSOR_WORKERS": "4", "VIALGUARD_GRPC_PORT": ""}
    config = parse_args(["--workers", "6"], environ=env)
    assert config.deadline_ms == 300 and config.workers == 6
    assert config.port == PreprocessorConfig().port  # an empty variable keeps the default


def test_bad_values_are_refused_with_the_setting_named() -> None:
    with pytest.raises(ValueError, match="deadline_ms"):
        parse_args([], environ={"VIALGUARD_DEADLINE_MS": "soon"})
    with pytest.raises(ValueError, match="workers must be > 0"):
        PreprocessorConfig(workers=0)


def test_redis_password_never_appears_in_what_is_shown() -> None:
    config = PreprocessorConfig(redis_url="redis://:s3cret@redis:6380/2")
    assert config.redis_display == "redis://redis:6380/2"


def test_default_message_limit_fits_a_full_mono16_acquisition_of_the_shipped_recipe() -> None:
    recipe = load_recipe()
    full_mono16 = recipe.frames_per_acquisition * recipe.frame_width * recipe.frame_height * 2
    assert PreprocessorConfig().max_message_bytes > full_mono16 + MIB
    check_message_limit(PreprocessorConfig(), recipe)


def test_a_limit_too_small_for_the_recipe_stops_the_start() -> None:
    recipe = load_recipe()
    too_small = largest_acquisition_bytes(recipe) // MIB - 1
    with pytest.raises(ValueError, match="PREPROCESSOR_MAX_MESSAGE_MB"):
        check_message_limit(PreprocessorConfig(max_message_mb=too_small), recipe)


@pytest.mark.parametrize(("caller_s", "expected_s"), [(None, 0.45), (3e9, 0.45), (0.2, 0.2), (60.0, 10.0)])
def test_deadline_is_the_callers_or_the_default_capped_at_the_maximum(caller_s: float | None,
                                                                      expected_s: float) -> None:
    deadline = Deadline.from_caller(caller_s, default_s=0.45, max_s=10.0)
    assert expected_s - 0.025 < deadline.remaining() <= expected_s
    assert not deadline.expired()


def test_a_spent_deadline_is_expired() -> None:
    deadline = Deadline.from_caller(0.0, default_s=0.45, max_s=10.0)
    time.sleep(0.001)
    assert deadline.expired() and deadline.remaining() == 0.0
