"""Checks of an acquisition's identity fields, made before anything else.

The acquisition_id is the idempotency key of the whole line (Redis keys, the
audit record), so an empty or odd one is refused here with a message, never
stored. A recipe this server does not run is a configuration mismatch between
camera and server (FAILED_PRECONDITION), not a malformed message.
"""
from __future__ import annotations

from vialguard.errors import AcquisitionError
from vialguard.recipe import Recipe
from vialguard.v1 import inspection_pb2 as pb

MAX_ID_LENGTH = 200


class RecipeMismatch(AcquisitionError):
    """The acquisition names a recipe other than the one this preprocessor runs."""


def _check_id(name: str, value: str) -> None:
    if not value:
        raise AcquisitionError(f"{name} is empty; every acquisition needs one")
    if len(value) > MAX_ID_LENGTH:
        raise AcquisitionError(f"{name} is {len(value)} characters long; at most {MAX_ID_LENGTH} are allowed")
    if any(c.isspace() or not c.isprintable() for c in value):
        raise AcquisitionError(f"{name} {value!r} contains spaces or control characters")


def check_identity(acquisition: pb.Acquisition, recipe: Recipe) -> None:
    """acquisition_id, product_id and recipe_id, against this server's recipe."""
    _check_id("acquisition_id", acquisition.acquisition_id)
    _check_id("product_id", acquisition.product_id)
    if not acquisition.recipe_id:
        raise AcquisitionError(f"recipe_id is empty; this preprocessor runs recipe '{recipe.id}'")
    if acquisition.recipe_id != recipe.id:
        raise RecipeMismatch(
            f"the acquisition is for recipe '{acquisition.recipe_id}' but this preprocessor runs recipe "
            f"'{recipe.id}'; send it to a preprocessor configured for that recipe"
        )
