"""Saves a streaming answer to the store so a crash loses at most `interval` seconds of it."""

from __future__ import annotations

from typing import Callable

from outlier_tui.store import ConversationStore


class AnswerRecorder:
    """Accumulates an answer and writes it as "partial" at most every `interval` seconds."""

    def __init__(self, store: ConversationStore, message_id: int,
                 clock: Callable[[], float], interval: float = 1.0) -> None:
        self.store = store
        self.message_id = message_id
        self.text = ""
        self.saves = 0
        self._clock = clock
        self._interval = interval
        self._last_save = clock()
        self._dirty = False

    def append(self, fragment: str) -> None:
        """Add a fragment; commit the text so far if the last save is old enough."""
        self.text += fragment
        self._dirty = True
        now = self._clock()
        if now - self._last_save >= self._interval:
            self.store.update_message(self.message_id, self.text, "partial")
            self.saves += 1
            self._last_save = now
            self._dirty = False

    def finish(self, status: str) -> None:
        """Write the final text with its status (complete, cancelled or error)."""
        self.store.update_message(self.message_id, self.text, status)
        self.saves += 1
        self._dirty = False
