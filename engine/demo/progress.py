"""Progress reporting for the demo build, as the engine's LoadProgress events."""

from __future__ import annotations

from engine.api import LoadProgress, ProgressFn


class Progress:
    """Maps the progress of one build step onto its share [lo, hi] of the whole."""

    def __init__(self, fn: ProgressFn | None, lo: float = 0.0, hi: float = 1.0):
        self._fn = fn
        self.lo = lo
        self.hi = hi

    def __call__(self, fraction: float, message: str) -> None:
        if self._fn is None:
            return
        fraction = min(1.0, max(0.0, fraction))
        self._fn(LoadProgress(self.lo + (self.hi - self.lo) * fraction, message))

    def part(self, lo: float, hi: float) -> Progress:
        """A sub-range of this range: lo and hi are fractions of it."""
        span = self.hi - self.lo
        return Progress(self._fn, self.lo + span * lo, self.lo + span * hi)
