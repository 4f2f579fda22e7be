"""What the aggregator accepts from the scores stream, and what it sets aside.

A message it cannot judge (not JSON, fields missing, a region that does not
exist, no patches) is *poison*: it goes to the dead-letter stream with the
reason, and the loop goes on. It is never judged with guessed values. The
waiting preprocessor then gets no reply and answers the camera with an error,
which the machine controller treats as a reject.
"""
from __future__ import annotations

import json
import math
from typing import Any

from vialguard.messages import ScoresMessage
from vialguard.recipe import REGION_IDS


class PoisonMessage(ValueError):
    """A scores entry that cannot be judged; the message says why, for the dead-letter stream."""


def _text(value: Any) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


def acquisition_id_of(fields: dict[Any, Any] | None) -> str:
    """Best-effort id for logs and the dead-letter entry of an unreadable message."""
    if not fields:
        return ""
    return _text(fields.get(b"acquisition_id", fields.get("acquisition_id", "")))


def parse_scores(fields: dict[Any, Any] | None) -> ScoresMessage:
    """The ScoresMessage of one stream entry, checked enough to be judged safely."""
    if not fields:
        raise PoisonMessage("entry has no fields")
    try:
        msg = ScoresMessage.from_fields(fields)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise PoisonMessage(f"'data' is not JSON: {exc}") from exc
    except (KeyError, TypeError, AttributeError, ValueError) as exc:
        raise PoisonMessage(f"'data' does not match ScoresMessage: {exc!r}") from exc
    if not isinstance(msg.acquisition_id, str) or not msg.acquisition_id:
        raise PoisonMessage("acquisition_id is empty")
    if not isinstance(msg.product_id, str) or not msg.product_id:
        raise PoisonMessage(f"acquisition {msg.acquisition_id}: product_id is empty")
    for name in ("run_index", "model_version"):
        if not isinstance(getattr(msg, name), int) or isinstance(getattr(msg, name), bool):
            raise PoisonMessage(f"acquisition {msg.acquisition_id}: {name} is not an integer")
    if not msg.patches:
        raise PoisonMessage(f"acquisition {msg.acquisition_id}: no patch scores")
    for i, p in enumerate(msg.patches):
        if not isinstance(p.region, int) or not 0 <= p.region < len(REGION_IDS):
            raise PoisonMessage(f"acquisition {msg.acquisition_id}: patch {i} has region {p.region!r}, not 0..3")
        if isinstance(p.score, bool) or not isinstance(p.score, (int, float)):
            raise PoisonMessage(f"acquisition {msg.acquisition_id}: patch {i} score {p.score!r} is not a number")
        if math.isinf(p.score):
            # NaN is judged (it rejects: a broken inference); an infinite score is a protocol error.
            raise PoisonMessage(f"acquisition {msg.acquisition_id}: patch {i} score is infinite")
    if not isinstance(msg.timings_ms, dict):
        raise PoisonMessage(f"acquisition {msg.acquisition_id}: timings_ms is not a mapping")
    return msg
