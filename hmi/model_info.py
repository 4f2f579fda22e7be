"""What the model view shows of a version: its thresholds, its published report, its ROC.

Read from the version's own directory in the model repository (the files the
trainer published with it), never from "the latest": the version shown is the
one the verdicts name. The report's Markdown (Tables 1-3) is rendered to HTML
with the Markdown package; it was written by the trainer, not by a user.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import markdown

from vialguard.calibration import Calibration
from vialguard.errors import VialguardError
from vialguard.inspector_io import CALIBRATION_FILENAME, MODEL_NAME, REPORT_JSON_FILENAME, REPORT_MD_FILENAME, \
    ROC_PNG_FILENAME
from vialguard.model_repository import list_versions, model_dir


@dataclass
class VersionInfo:
    version: int
    directory: Path
    thresholds: dict[str, dict[str, float]] = field(default_factory=dict)   # set name -> region -> threshold
    serving: str = ""
    run_policy: tuple[int, int] | None = None
    profile: str = ""
    patch_size: int | None = None
    created_utc: str = ""
    report_html: str = ""
    has_roc: bool = False
    problems: list[str] = field(default_factory=list)


def published_versions(repository: Path) -> list[int]:
    return list_versions(repository)


def version_info(repository: Path, version: int) -> VersionInfo:
    """Everything the model view shows of one version; what cannot be read is listed in ``problems``."""
    directory = model_dir(repository) / str(version)
    info = VersionInfo(version, directory)
    if not directory.is_dir():
        info.problems.append(f"version {version} is not in {model_dir(repository)} (removed, or another repository)")
        return info
    try:
        cal = Calibration.load(directory / CALIBRATION_FILENAME)
        info.thresholds = {name: t.as_mapping() for name, t in cal.thresholds.items()}
        info.serving, info.run_policy = cal.serving, (cal.run_policy.k, cal.run_policy.n)
        info.profile, info.patch_size, info.created_utc = cal.profile, cal.patch_size, cal.created_utc
    except (VialguardError, OSError, ValueError, KeyError) as exc:
        info.problems.append(f"calibration: {exc}")
    meta = _json(directory / "version.json")
    if meta:
        info.created_utc = str(meta.get("created_utc", info.created_utc))
        info.profile = str(meta.get("profile", info.profile))
        info.patch_size = meta.get("patch_size", info.patch_size)
    report = directory / REPORT_MD_FILENAME
    if report.is_file():
        text = report.read_text(encoding="utf-8")
        html = markdown.markdown(text, extensions=["tables"], output_format="html")
        # The report links its figure next to it; on the HMI that file is served by the model API.
        info.report_html = html.replace(f'src="{ROC_PNG_FILENAME}"', f'src="/api/model/{version}/{ROC_PNG_FILENAME}"')
    else:
        info.problems.append(f"no {REPORT_MD_FILENAME} published with this version")
    info.has_roc = (directory / ROC_PNG_FILENAME).is_file()
    return info


def report_json(repository: Path, version: int) -> dict[str, Any]:
    return _json(model_dir(repository) / str(version) / REPORT_JSON_FILENAME)


def roc_path(repository: Path, version: int) -> Path | None:
    path = model_dir(repository, MODEL_NAME) / str(int(version)) / ROC_PNG_FILENAME
    return path if path.is_file() else None


def _json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}
