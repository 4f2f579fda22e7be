"""Graceful stop: the first SIGTERM/SIGINT finishes the work in hand, a second one exits at once.

``docker compose stop`` sends SIGTERM and waits 10 s: the loop notices the flag
after the batch in hand (at most ``block_ms`` later when idle), acks, and exits 0.
Whatever is not acked when a second signal kills it is redelivered to another
consumer, so even the hard stop loses nothing.
"""
from __future__ import annotations

import logging
import os
import signal
import time
from types import FrameType

log = logging.getLogger(__name__)

HARD_EXIT_CODE = 128 + signal.SIGTERM


class Shutdown:
    def __init__(self) -> None:
        self.requested = False

    def request(self) -> None:
        self.requested = True

    def sleep(self, seconds: float) -> None:
        """Sleep that a stop request cuts short (safe with signal handlers, unlike Event.wait)."""
        deadline = time.monotonic() + seconds
        while not self.requested and time.monotonic() < deadline:
            time.sleep(min(0.05, max(0.0, deadline - time.monotonic())))

    def install(self) -> None:
        def on_signal(signum: int, _frame: FrameType | None) -> None:
            if self.requested:
                log.warning("second %s: exiting now; unacknowledged entries will be redelivered",
                            signal.Signals(signum).name)
                os._exit(HARD_EXIT_CODE)
            log.info("%s: finishing the entries in hand, then exiting", signal.Signals(signum).name)
            self.request()

        signal.signal(signal.SIGTERM, on_signal)
        signal.signal(signal.SIGINT, on_signal)
