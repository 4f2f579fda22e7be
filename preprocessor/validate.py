"""Checks of an acquisition's identity fields, made before anything else.

The acquisition_id is the idempotency key of the whole line (Redis keys, the
audit record), so an empty or odd one is refused here with a message, never
stored. A recipe this server does not run is a configuration mismatch between
camera and server (FAILED_PRECONDITION), not a malformed message.

Every field a client sends is bounded and checked here before it is used or
echoed: an error message quotes at most ``SHOWN_CHARS`` of it, so a hostile
10,000-character field can never overflow gRPC's metadata limit (which turned
such a refusal into RESOURCE_EXHAUSTED).
"""
from __future__ import annotations

from vialguard.errors import AcquisitionError
from vialguard.recipe import Recipe
from vialguard.v1 import inspection_pb2 as pb

MAX_ID_LENGTH = 200
MAX_STREAM_ID_LENGTH = 41   # "<20 digits>-<20 digits>"
SHOWN_CHARS = 40


class RecipeMismatch(AcquisitionError):
    """The acquisition names a recipe other than the one this preprocessor runs."""


def shown(value: str, limit: int = SHOWN_CHARS) -> str:
    """A client's string as an error message may quote it: repr'd, cut to ``limit`` characters."""
    if len(value) <= limit:
        return repr(value)
    return f"{value[:limit]!r}... ({len(value)} characters)"


def check_id(name: str, value: str) -> None:
    if not value:
        raise AcquisitionError(f"{name} is empty; every acquisition needs one")
    if len(value) > MAX_ID_LENGTH:
        raise AcquisitionError(f"{name} is {len(value)} characters long; at most {MAX_ID_LENGTH} are allowed")
    if any(c.isspace() or not c.isprintable() for c in value):
        raise AcquisitionError(f"{name} {shown(value)} contains spaces or control characters")


def check_identity(acquisition: pb.Acquisition, recipe: Recipe) -> None:
    """acquisition_id, product_id, recipe_id and the frame count, against this server's recipe."""
    check_id("acquisition_id", acquisition.acquisition_id)
    check_id("product_id", acquisition.product_id)
    if not acquisition.recipe_id:
        raise AcquisitionError(f"recipe_id is empty; this preprocessor runs recipe '{recipe.id}'")
    if acquisition.recipe_id != recipe.id:  # whatever its length: quoted bounded, it is another recipe
        raise RecipeMismatch(
            f"the acquisition is for recipe {shown(acquisition.recipe_id)} but this preprocessor runs recipe "
            f"'{recipe.id}'; send it to a preprocessor configured for that recipe"
        )
    if len(acquisition.frames) > recipe.frames_per_acquisition:
        raise AcquisitionError(
            f"the acquisition has {len(acquisition.frames)} frames; recipe '{recipe.id}' has "
            f"{recipe.frames_per_acquisition} per acquisition"
        )


def check_watch_request(request: pb.WatchRequest) -> None:
    if len(request.after_id) > MAX_STREAM_ID_LENGTH:
        raise AcquisitionError(f"after_id is {len(request.after_id)} characters long; a stream id is at most "
                               f"{MAX_STREAM_ID_LENGTH} (like '1700000000000-0')")
    if request.product_id:
        check_id("product_id", request.product_id)
