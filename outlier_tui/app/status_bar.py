"""The top bar (chat title, model, state) and the model-load line above the input."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.containers import Horizontal
from textual.content import Content
from textual.widgets import ContentSwitcher, Label, ProgressBar, Static

from engine.api import LoadProgress
from outlier_tui.app.model_state import ModelState

STATE_STYLES = {
    ModelState.READY: "$success",
    ModelState.LOADING: "$warning",
    ModelState.ERROR: "$error",
}


class TopBar(Static):
    """One line: app name, current chat, model and engine state."""

    def set_state(self, chat_title: str, model: str, model_state: ModelState, generating: bool) -> None:
        """Redraw with the given values."""
        if generating:
            state, style = "generating", "$accent"
        elif model or model_state is not ModelState.EMPTY:
            state, style = model_state.value, STATE_STYLES.get(model_state, "$text-muted")
        else:
            state, style = "no model", "$text-muted"
        self.update(
            Content.assemble(
                (" Outlier ", "bold $primary"),
                ("│ ", "$text-muted"),
                chat_title,
                (" │ ", "$text-muted"),
                (model + " " if model else "", "$text-muted"),
                (state, style),
            )
        )


class ModelStatus(ContentSwitcher):
    """Load progress (a ProgressBar fed by the engine's LoadProgress events) or a load
    error, with the key to pick another model; hidden when the model is ready."""

    DEFAULT_CSS = """
    ModelStatus #load-progress { height: 1; }
    ModelStatus #load-title { text-style: bold; color: $warning; }
    ModelStatus Bar { width: 20; }
    ModelStatus #load-message { margin-left: 1; }
    """

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id, initial="load-progress")

    def compose(self) -> ComposeResult:
        with Horizontal(id="load-progress"):
            yield Label("Loading model ", id="load-title")
            yield ProgressBar(total=1.0, show_eta=False)
            yield Label(id="load-message")
        yield Static(id="load-error")

    def show_progress(self, progress: LoadProgress) -> None:
        """Loading: how far, and what the engine or the demo build is doing."""
        self.query_one(ProgressBar).update(progress=max(0.0, min(1.0, progress.fraction)))
        self.query_one("#load-message", Label).update(progress.message)
        self.current = "load-progress"
        self.set_classes("-loading")
        self.display = True

    def show_error(self, reason: str, key: str) -> None:
        """A load error stays on screen with its reason until a load succeeds."""
        self.query_one("#load-error", Static).update(
            Content.assemble(
                ("Model not loaded: ", "bold $error"), reason, (f"  ({key}: load another folder)", "$text-muted")
            )
        )
        self.current = "load-error"
        self.set_classes("-error")
        self.display = True

    def hide(self) -> None:
        """Model ready: nothing to say."""
        self.display = False
