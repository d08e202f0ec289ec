"""Shrink the expert cache when the system runs short of memory while a model runs.

The budget is sized from free memory at load; another app can take memory later. Below
a floor of free memory the cache gives back what the system lacks (never below one
layer's experts) rather than let the OS swap: a swapped-out expert costs a page-in on
top of the read the cache was saving, and a swapped backbone stalls every token. It does
not grow back by itself (free memory that returns may be taken again): reloading the
model sizes the cache afresh.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import psutil

from engine.expert_streamer import ExpertStreamer
from engine.telemetry import Telemetry

MB = 1024 * 1024
FLOOR_SHARE = 0.05  # of the machine's memory: free memory below this is "running short"
FLOOR_MIN_BYTES = 512 * MB
CHECK_EVERY_S = 1.0  # psutil reads the system's figures: not on every token of a fast model


def default_floor() -> int:
    return max(FLOOR_MIN_BYTES, int(psutil.virtual_memory().total * FLOOR_SHARE))


def _available() -> int:
    return psutil.virtual_memory().available


class MemoryGuard:
    """Owned by the loaded model; checked on the engine thread between tokens."""

    def __init__(
        self,
        streamer: ExpertStreamer,
        min_slots: int,
        telemetry: Telemetry,
        floor_bytes: int | None = None,
        available: Callable[[], int] = _available,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.streamer, self.min_slots, self.telemetry = streamer, min_slots, telemetry
        self.floor_bytes = default_floor() if floor_bytes is None else floor_bytes
        self._available, self._clock = available, clock
        self._checked_at = -CHECK_EVERY_S
        self.notice = ""  # the last shrink, for the user

    def check(self) -> str:
        """Shrink the cache if free memory is under the floor; the notice of a shrink, or ""."""
        now = self._clock()
        if now - self._checked_at < CHECK_EVERY_S:
            return ""
        self._checked_at = now
        free = self._available()
        if free >= self.floor_bytes:
            return ""
        before = self.streamer.pool_bytes
        after = self.streamer.shrink(before - (self.floor_bytes - free), self.min_slots)
        if after >= before:
            return ""  # already at one layer's experts
        self.notice = (
            f"Free memory fell to {free / MB:,.0f} MB (floor {self.floor_bytes / MB:,.0f} MB): the expert cache "
            f"shrank from {before / MB:,.0f} to {after / MB:,.0f} MB. Reload the model to size it again."
        )
        self.telemetry.record_budget(after, self.notice)
        return self.notice
