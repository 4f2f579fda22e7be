"""The calibration of each model version, loaded once per version.

DESIGN invariant 3: the thresholds that judge a set of scores are those of the
version that produced them, read from that version's ``calibration.json``,
never those of the latest version. A published version directory never changes
(it appears whole by rename), so a calibration loaded once is cached for good.

A version whose calibration cannot be read is *not* cached: the failure is
usually an operational one (repository mount missing, version removed too
early), and the next acquisition should see the repaired file. Until then every
acquisition of that version is rejected (see ``aggregator.decide``): a wrong
accept can reach a patient, a wrong reject costs one strip.
"""
from __future__ import annotations

import logging
import re
import threading
from dataclasses import dataclass
from pathlib import Path

from vialguard.calibration import Calibration
from vialguard.errors import CalibrationError, ModelVersionError
from vialguard.model_repository import load_version_calibration

log = logging.getLogger(__name__)

# A model name is one directory of the repository, never a path.
_MODEL_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]*$")


@dataclass(frozen=True)
class CalibrationLookup:
    """Either the version's calibration, or the reason there is none."""

    calibration: Calibration | None
    problem: str = ""


class ThresholdCache:
    """Per-(model, version) calibration, read from the model repository on first use."""

    def __init__(self, repository: Path) -> None:
        self.repository = Path(repository)
        self._cache: dict[tuple[str, int], Calibration] = {}
        self._lock = threading.Lock()

    def lookup(self, model_name: str, version: int) -> CalibrationLookup:
        key = (model_name, int(version))
        with self._lock:
            cached = self._cache.get(key)
        if cached is not None:
            return CalibrationLookup(cached)
        if not _MODEL_NAME.match(model_name) or int(version) < 1:
            return self._missing(key, f"model '{model_name}' version {version} is not a valid model version")
        try:
            calibration = load_version_calibration(self.repository, int(version), model_name)
        except (CalibrationError, ModelVersionError, OSError) as exc:
            return self._missing(key, str(exc))
        with self._lock:
            self._cache[key] = calibration
        log.info("loaded thresholds of %s version %d: %s", model_name, version,
                 calibration.serving_thresholds.as_mapping())
        return CalibrationLookup(calibration)

    def _missing(self, key: tuple[str, int], problem: str) -> CalibrationLookup:
        log.error(
            "NO THRESHOLDS for model '%s' version %d (%s): its acquisitions are REJECTED "
            "until the version's calibration.json is readable in %s", key[0], key[1], problem, self.repository,
        )
        return CalibrationLookup(None, problem)
