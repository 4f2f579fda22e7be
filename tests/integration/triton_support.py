"""Shared set-up for the tests that run a real tritonserver from .venv-triton.

Each test module starts its own server on free ports over its own temporary
model repository (the repository's configs + tiny ONNX versions), so no test
depends on another's server or versions.
"""
from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest

from tests.tiny_inspector import publish_tiny_version
from vialguard_stack.triton_server import REPO_ROOT, TritonInstallation, TritonNotInstalled

PATCH = 32          # tiny patches keep the suite fast; the contract is size-independent
V1_GAIN, V1_THRESHOLD = 1.0, 0.2
V2_GAIN, V2_THRESHOLD = 0.9, 0.3


def triton_installation() -> TritonInstallation:
    """The local Triton, or a skip that says how to get it."""
    try:
        return TritonInstallation.find()
    except TritonNotInstalled as exc:
        pytest.skip(f"no local Triton: {exc}")


def repository_with_v1(root: Path) -> Path:
    """A model repository holding the committed configs and one tiny version (1).

    The tiny versions take float patches (32 px is no native crop), so the copied
    configs are made to say so, as the rollout writes a version's own input type
    into the config it loads; these servers boot without a rollout.
    """
    repository = root / "model_repository"
    configs = repository / "inspector" / "configs"
    shutil.copytree(REPO_ROOT / "model_repository" / "inspector" / "configs", configs)
    for config in configs.glob("*.pbtxt"):
        text = config.read_text()
        config.write_text(re.sub(r'(name: "patches", data_type: )TYPE_UINT(8|16)', r"\1TYPE_FP32", text))
    publish_tiny_version(repository, PATCH, V1_GAIN, V1_THRESHOLD)
    return repository


def require_local_stack() -> None:
    """Skip (with the fix) unless both servers of the local stack are installed."""
    triton_installation()
    if shutil.which("redis-server") is None:
        pytest.skip("redis-server is not installed (make setup installs it)")
