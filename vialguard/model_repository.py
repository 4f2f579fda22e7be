"""Model versions in Triton's model repository, published whole or not at all.

DESIGN invariant 4: a version is written into a staging directory on the same
filesystem, fsynced, then renamed to its number in one step; Triton (explicit
model control) is asked to load it only after that. Version numbers only grow:
the next number is one past the largest ever seen, including versions that were
removed since (a high-water mark file remembers them).
"""
from __future__ import annotations

import json
import os
import shutil
import uuid
from collections.abc import Callable
from pathlib import Path

from vialguard.calibration import Calibration
from vialguard.errors import ModelVersionError
from vialguard.inspector_io import CALIBRATION_FILENAME, DATATYPE_FP32, MANIFEST_FILENAME, MODEL_NAME, ONNX_FILENAME

STAGING_DIR = ".staging"
HIGH_WATER_FILE = ".last_version"
REQUIRED_FILES = (ONNX_FILENAME, CALIBRATION_FILENAME)


def model_dir(repository: Path, model: str = MODEL_NAME) -> Path:
    return Path(repository) / model


def list_versions(repository: Path, model: str = MODEL_NAME) -> list[int]:
    """Published version numbers, ascending."""
    d = model_dir(repository, model)
    if not d.is_dir():
        return []
    return sorted(int(p.name) for p in d.iterdir() if p.is_dir() and p.name.isdigit())


def latest_version(repository: Path, model: str = MODEL_NAME) -> int | None:
    versions = list_versions(repository, model)
    return versions[-1] if versions else None


def version_dir(repository: Path, version: int, model: str = MODEL_NAME) -> Path:
    path = model_dir(repository, model) / str(version)
    if not path.is_dir():
        raise ModelVersionError(f"model '{model}' has no version {version} in {repository}")
    return path


def load_version_calibration(repository: Path, version: int, model: str = MODEL_NAME) -> Calibration:
    """The calibration that belongs to exactly this version (never 'the latest')."""
    return Calibration.load(version_dir(repository, version, model) / CALIBRATION_FILENAME)


def version_input_datatype(repository: Path, version: int, model: str = MODEL_NAME) -> str:
    """The KServe datatype a version's ``patches`` input takes: version.json's io.input_datatype.

    A version without it was exported before integer inputs existed and takes FP32
    (version 3 and older): the rollout writes this into the config it loads, so each
    version is served with the input type its graph has.
    """
    path = version_dir(repository, version, model) / MANIFEST_FILENAME
    if not path.is_file():
        return DATATYPE_FP32
    try:
        manifest = json.loads(path.read_text())
    except ValueError as exc:
        raise ModelVersionError(f"{path} is not valid JSON: {exc}") from exc
    return str((manifest.get("io") or {}).get("input_datatype") or DATATYPE_FP32)


def copy_version(repository: Path, version: int, target: Path, model: str = MODEL_NAME) -> Path:
    """A scratch repository at ``target`` holding ``version`` and the model's configs; returns ``target``.

    For deriving or measuring a version without touching the real repository.
    """
    source, into = model_dir(repository, model), model_dir(target, model)
    into.mkdir(parents=True)
    for name in ("config.pbtxt", "configs"):
        if (source / name).is_dir():
            shutil.copytree(source / name, into / name)
        elif (source / name).is_file():
            shutil.copy2(source / name, into / name)
    shutil.copytree(source / str(version), into / str(version))
    return Path(target)


def _next_version(repository: Path, model: str) -> int:
    mark = model_dir(repository, model) / HIGH_WATER_FILE
    seen = int(mark.read_text().strip()) if mark.is_file() else 0
    return max([seen, *list_versions(repository, model)]) + 1


def _fsync_tree(root: Path) -> None:
    for path in sorted(root.rglob("*")):
        if path.is_file():
            with open(path, "rb") as fh:
                os.fsync(fh.fileno())
    fd = os.open(root, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def publish_version(
    repository: Path, write: Callable[[Path], None], model: str = MODEL_NAME
) -> int:
    """Write a new version with ``write(staging_dir)`` and rename it into place.

    Returns the new version number. If ``write`` fails or leaves a required file
    out, nothing appears in the model directory.
    """
    repository = Path(repository)
    staging_root = repository / STAGING_DIR
    staging_root.mkdir(parents=True, exist_ok=True)
    model_dir(repository, model).mkdir(parents=True, exist_ok=True)
    staging = staging_root / f"{model}-{uuid.uuid4().hex}"
    staging.mkdir()
    try:
        write(staging)
        missing = [name for name in REQUIRED_FILES if not (staging / name).is_file()]
        if missing:
            raise ModelVersionError(f"new version of '{model}' is incomplete, missing {missing}")
        _fsync_tree(staging)
        version = _next_version(repository, model)
        target = model_dir(repository, model) / str(version)
        os.rename(staging, target)  # atomic on one filesystem; fails if target exists
        mark = model_dir(repository, model) / HIGH_WATER_FILE
        tmp_mark = mark.with_suffix(".tmp")
        tmp_mark.write_text(f"{version}\n")
        os.replace(tmp_mark, mark)
        return version
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)
