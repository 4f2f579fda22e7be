"""scripts/build_trt_plan.sh without a GPU: arguments, engine shapes, atomic writes (fake trtexec)."""
from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from tests.tiny_inspector import publish_tiny_version
from vialguard.inspector_io import INPUT_PATCHES, MAX_BATCH, PLAN_FILENAME
from vialguard.model_repository import version_dir

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "build_trt_plan.sh"
FAKE_TRTEXEC = """#!/usr/bin/env bash
# records its arguments and writes an "engine" where --saveEngine says
echo "$@" >> "$(dirname "$0")/calls"
for a in "$@"; do case "$a" in --saveEngine=*) echo engine > "${a#--saveEngine=}";; esac; done
"""


def run(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["bash", str(SCRIPT), *args], capture_output=True, text=True, timeout=60,
                          env={**os.environ, **(env or {})})


@pytest.fixture()
def repository(tmp_path: Path) -> Path:
    repo = tmp_path / "repo"
    publish_tiny_version(repo, 48, gain=1.0, threshold=0.2)
    publish_tiny_version(repo, 48, gain=0.9, threshold=0.3)
    return repo


def test_dry_run_profiles_one_to_max_batch_patches_of_the_versions_side(repository: Path) -> None:
    done = run(str(repository), "--dry-run")
    assert done.returncode == 0, done.stderr
    commands = done.stdout.strip().splitlines()
    assert len(commands) == 2
    for shape, batch in (("minShapes", 1), ("optShapes", 60), ("maxShapes", MAX_BATCH)):
        assert f"--{shape}={INPUT_PATCHES}:{batch}x48x48x1" in commands[0]
    assert "--fp16" not in commands[0] and "--fp16" in run(str(repository), "--dry-run", "--fp16").stdout


def test_every_version_without_a_plan_gets_one_written_by_rename(repository: Path, tmp_path: Path) -> None:
    fake = tmp_path / "trtexec"
    fake.write_text(FAKE_TRTEXEC)
    fake.chmod(0o755)
    (version_dir(repository, 1) / PLAN_FILENAME).write_text("already built")
    done = run(str(repository), env={"TRTEXEC": str(fake)})
    assert done.returncode == 0, done.stderr
    assert (version_dir(repository, 1) / PLAN_FILENAME).read_text() == "already built"  # kept, not rebuilt
    assert (version_dir(repository, 2) / PLAN_FILENAME).read_text() == "engine\n"
    assert len((tmp_path / "calls").read_text().splitlines()) == 1
    assert not list(version_dir(repository, 2).glob(".model.plan.tmp.*"))  # nothing half-written left


@pytest.mark.parametrize(
    ("args", "message"),
    [(["--min", "70"], "min <= opt <= max"), (["--max", "x"], "positive integers"), (["--bogus"], "unknown option")],
)
def test_bad_arguments_are_refused_with_a_reason(repository: Path, args: list[str], message: str) -> None:
    done = run(str(repository), "--dry-run", *args)
    assert done.returncode == 2 and message in done.stderr


def test_without_trtexec_it_says_where_to_run(repository: Path) -> None:
    done = run(str(repository), env={"PATH": "/usr/bin:/bin", "TRTEXEC": ""})
    assert done.returncode == 2 and "target GPU" in done.stderr
