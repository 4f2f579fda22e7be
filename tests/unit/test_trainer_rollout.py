"""The trainer asks Triton to load what it published only when told where Triton is."""
from __future__ import annotations

from pathlib import Path

import pytest

from trainer import chain
from trainer.cli import build_parser


def test_no_triton_url_publishes_without_loading(monkeypatch: pytest.MonkeyPatch) -> None:
    import vialguard_stack.rollout as rollout

    monkeypatch.setattr(rollout, "load_version", lambda *a, **k: pytest.fail("must not load"))
    chain.roll_out(None, 3, Path("model_repository"))


def test_triton_url_loads_exactly_the_published_version(monkeypatch: pytest.MonkeyPatch) -> None:
    import vialguard_stack.rollout as rollout

    calls = []

    def fake_load(url: str, version: int, repository: Path):
        calls.append((url, version, repository))
        return rollout.RolloutResult(version=version, patch_size=64, load_s=0.1)

    monkeypatch.setattr(rollout, "load_version", fake_load)
    chain.roll_out("localhost:8001", 7, Path("repo"))
    assert calls == [("localhost:8001", 7, Path("repo"))]


def test_triton_url_defaults_from_the_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("VIALGUARD_TRITON_URL", "triton:8001")
    args = build_parser().parse_args(["all", "--out", str(tmp_path)])
    assert args.triton == "triton:8001"
