"""The time one Inspect may take, from the caller's gRPC deadline.

Every blocking step (inference, waiting for the verdict) gets what is left of
one budget, so the stages cannot add up to more than the caller allowed.
"""
from __future__ import annotations

import time
from dataclasses import dataclass

# Answer this much before the caller's deadline, so the caller reads our
# DEADLINE_EXCEEDED message (what was queued) rather than its own bare one.
ANSWER_MARGIN_S = 0.010
# gRPC reports "no deadline" as a deadline in the far future, not as None.
NO_DEADLINE_S = 1e7


@dataclass(frozen=True)
class Deadline:
    expires_at: float  # time.monotonic() seconds

    @classmethod
    def from_caller(cls, caller_remaining_s: float | None, default_s: float, max_s: float) -> "Deadline":
        """The caller's remaining time (None or far future: no deadline -> default_s), capped at max_s."""
        no_deadline = caller_remaining_s is None or caller_remaining_s > NO_DEADLINE_S
        budget = default_s if no_deadline else caller_remaining_s
        budget = min(budget, max_s)
        budget -= min(ANSWER_MARGIN_S, 0.1 * budget)
        return cls(time.monotonic() + max(0.0, budget))

    def remaining(self) -> float:
        return max(0.0, self.expires_at - time.monotonic())

    def expired(self) -> bool:
        return self.remaining() <= 0.0
