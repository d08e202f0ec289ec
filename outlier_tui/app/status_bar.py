"""The top bar (chat title, model, state) and the model-load line above the input."""

from __future__ import annotations

from textual.content import Content
from textual.widgets import Static


class TopBar(Static):
    """One line: app name, current chat, model and engine state."""

    def set_state(self, chat_title: str, model: str, state: str) -> None:
        """Redraw with the given values."""
        style = {"ready": "$success", "generating": "$accent", "loading": "$warning", "error": "$error"}.get(
            state, "$text-muted"
        )
        self.update(
            Content.assemble(
                (" Outlier ", "bold $primary"),
                ("│ ", "$text-muted"),
                chat_title,
                (" │ ", "$text-muted"),
                (model + " " if model else "", "$text-muted"),
                (state if model or state != "empty" else "no model", style),
            )
        )


class ModelStatus(Static):
    """Load progress or a load error, with the key to pick another model; hidden when ready."""

    def show_progress(self, fraction: float, message: str) -> None:
        """Loading: a text progress bar (no timers, so snapshots stay deterministic)."""
        width = 20
        filled = int(max(0.0, min(1.0, fraction)) * width)
        self.update(
            Content.assemble(
                ("Loading model ", "bold $warning"),
                ("█" * filled, "$warning"),
                ("░" * (width - filled), "$text-muted"),
                f" {fraction:4.0%} ",
                message,
            )
        )
        self.set_classes("-loading")
        self.display = True

    def show_error(self, reason: str, key: str) -> None:
        """A load error stays on screen with its reason until a load succeeds."""
        self.update(
            Content.assemble(
                ("Model not loaded: ", "bold $error"), reason, (f"  ({key}: load another folder)", "$text-muted")
            )
        )
        self.set_classes("-error")
        self.display = True

    def hide(self) -> None:
        """Model ready: nothing to say."""
        self.display = False
