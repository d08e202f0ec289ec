"""Where the app is with its model: what the top bar and the load status line show."""

from __future__ import annotations

from enum import Enum


class ModelState(str, Enum):
    """The app's model, as the user sees it (the engine's own state is engine.api.EngineState)."""

    EMPTY = "empty"  # no load started yet
    LOADING = "loading"
    READY = "ready"
    ERROR = "error"  # the last load failed; the reason stays on screen

    def __str__(self) -> str:
        return self.value
