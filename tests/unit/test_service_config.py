"""Every service reads its settings the same way: command line > environment > defaults."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest

from vialguard.service_config import settings_from_args, settings_from_env


@dataclass(frozen=True)
class Demo:
    redis_url: str = "redis://localhost:6379/0"
    block_ms: int = 1000
    ratio: float = 0.5
    store: Path = Path("var/x")


ENV = {"X_REDIS_URL": "redis_url", "X_BLOCK_MS": "block_ms", "X_RATIO": "ratio", "X_STORE": "store"}


def test_environment_overrides_defaults_and_converts_types() -> None:
    cfg = settings_from_env(Demo, ENV, "demo", {"X_BLOCK_MS": "250", "X_RATIO": "0.25", "X_STORE": "/a", "X_REDIS_URL": ""})
    assert cfg == Demo(block_ms=250, ratio=0.25, store=Path("/a"))


def test_command_line_overrides_environment() -> None:
    cfg = settings_from_args(Demo, ENV, "demo", "demo", "d", ["--block-ms", "5"], {"X_BLOCK_MS": "250"})
    assert cfg.block_ms == 5


def test_a_bad_value_names_the_service_and_the_setting() -> None:
    with pytest.raises(ValueError, match="demo setting block_ms='soon' is not a valid int"):
        settings_from_env(Demo, ENV, "demo", {"X_BLOCK_MS": "soon"})


def test_help_never_shows_the_redis_password(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        settings_from_args(Demo, ENV, "demo", "demo", "d", ["--help"], {"X_REDIS_URL": "redis://:s3cret@redis:6379/0"})
    out = capsys.readouterr().out
    assert "s3cret" not in out and "redis://redis:6379/0" in out
