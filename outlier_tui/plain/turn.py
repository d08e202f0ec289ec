"""One question-and-answer turn against the engine, shared by the REPL and pipe mode.

The collector turns engine events into the answer text, a final status and
stats, and saves the answer as "partial" at most every `save_every` seconds
so that a crash mid-answer keeps what was already shown.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Callable, Optional

from engine.api import GenerationDone, GenerationFailed, GenerationStats, TextDelta

SaveFn = Callable[[str, str], None]  # (answer text so far, status)


@dataclass
class TurnResult:
    text: str
    status: str  # "complete" | "cancelled" | "error"
    stats: Optional[GenerationStats] = None
    error: Optional[str] = None


class AnswerCollector:
    """Accumulates one answer's events; call handle() per event, then finish()."""

    def __init__(self, on_text: Callable[[str], None], save: Optional[SaveFn] = None,
                 save_every: float = 0.5) -> None:
        self._on_text = on_text
        self._save = save
        self._save_every = save_every
        self._last_save = time.monotonic()
        self._parts: list[str] = []
        self.result: Optional[TurnResult] = None

    @property
    def text(self) -> str:
        return "".join(self._parts)

    def handle(self, event: object) -> None:
        """Take one engine event (TextDelta, GenerationDone or GenerationFailed)."""
        if isinstance(event, TextDelta):
            self._parts.append(event.text)
            self._on_text(event.text)
            now = time.monotonic()
            if self._save is not None and now - self._last_save >= self._save_every:
                self._save(self.text, "partial")
                self._last_save = now
        elif isinstance(event, GenerationDone):
            status = "cancelled" if event.cancelled else "complete"
            self.result = TurnResult(self.text, status, stats=event.stats)
        elif isinstance(event, GenerationFailed):
            self.result = TurnResult(self.text, "error", error=event.message)

    def fail(self, message: str) -> None:
        """Record a failure that did not come as an event (an exception from the engine)."""
        self.result = TurnResult(self.text, "error", error=message)

    def cancel(self) -> None:
        """Record that the answer was abandoned without the engine's final event."""
        if self.result is None:
            self.result = TurnResult(self.text, "cancelled")

    def finish(self) -> TurnResult:
        """The final result, saved with its final status (the error text if no answer text came)."""
        if self.result is None:
            self.result = TurnResult(self.text, "error",
                                     error="The engine stopped without finishing the answer: send it again.")
        if self._save is not None:
            result = self.result
            content = result.text if result.text or result.status != "error" else (result.error or "")
            self._save(content, result.status)
        return self.result


def one_line(exc: BaseException) -> str:
    """An exception as one line for `outlier: ...` messages (never a traceback)."""
    from engine.errors import OutlierError

    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    if isinstance(exc, OutlierError) and text:
        return text
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__
