"""Domain errors with messages a line engineer can act on.

Every service maps these to a precise gRPC status instead of a stack trace.
"""
from __future__ import annotations


class VialguardError(Exception):
    """Base class of every error vialguard raises on purpose."""


class RecipeError(VialguardError):
    """The recipe file is missing a field or holds a value that cannot describe a strip."""

    def __init__(self, field: str, problem: str) -> None:
        super().__init__(f"recipe field '{field}': {problem}")
        self.field = field
        self.problem = problem


class AcquisitionError(VialguardError):
    """An acquisition does not match its recipe (frame count, size, bit depth...)."""


class ModelVersionError(VialguardError):
    """A model version directory is missing, incomplete or inconsistent."""


class CalibrationError(VialguardError):
    """A calibration file is missing or does not match the contract."""


class DatasetError(VialguardError):
    """An acquisition dataset on disk (header, manifest, frames or masks) is missing or malformed."""


class SimulatorError(VialguardError):
    """The simulator was asked for something it cannot render (unknown defect, region, count...)."""
