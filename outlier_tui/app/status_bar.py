"""The top bar (chat title, model, state) and the model-load line above the input."""

from __future__ import annotations

import time
from collections.abc import Callable

from textual.app import ComposeResult
from textual.containers import Horizontal
from textual.content import Content
from textual.widgets import ContentSwitcher, Label, ProgressBar, Static

from engine.api import LoadProgress
from outlier_tui.app.model_state import ModelState
from outlier_tui.model_choice import DEMO_BUILD_NOTE

LOADING_TITLE = "Loading model "
DEMO_BUILD_TITLE = f"Building the demo model ({DEMO_BUILD_NOTE}) "


def elapsed_text(seconds: float) -> str:
    """'42 s', '2 min 05 s': how long a load has taken, for the progress line."""
    whole = max(0, int(seconds))
    return f"{whole} s" if whole < 60 else f"{whole // 60} min {whole % 60:02d} s"


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
    """Load progress (a ProgressBar fed by the engine's LoadProgress events, the time it
    has taken so far) or a load error, with the key to pick another model; hidden when
    the model is ready. A first run's demo build says what it is and what it costs."""

    DEFAULT_CSS = """
    ModelStatus #load-progress { height: 1; }
    ModelStatus #load-title { text-style: bold; color: $warning; }
    ModelStatus Bar { width: 20; }
    ModelStatus #load-elapsed { margin-left: 1; color: $text-muted; }
    ModelStatus #load-message { margin-left: 1; }
    """

    def __init__(self, *, id: str | None = None, clock: Callable[[], float] = time.monotonic) -> None:
        super().__init__(id=id, initial="load-progress")
        self._clock = clock
        self._started: float | None = None  # when the load on screen began

    def compose(self) -> ComposeResult:
        with Horizontal(id="load-progress"):
            yield Label(LOADING_TITLE, id="load-title")
            yield ProgressBar(total=1.0, show_eta=False)
            yield Label(id="load-elapsed")
            yield Label(id="load-message")
        yield Static(id="load-error")

    def on_mount(self) -> None:
        self.set_interval(1.0, self._tick)

    def show_progress(self, progress: LoadProgress, building_demo: bool = False) -> None:
        """Loading: how far, for how long, and what the engine or the demo build is doing.
        building_demo: the event comes from the first run's demo build, not a load."""
        if self._started is None or not self.display or self.current != "load-progress":
            self._started = self._clock()  # a new load: the elapsed time starts again
        self.query_one("#load-title", Label).update(DEMO_BUILD_TITLE if building_demo else LOADING_TITLE)
        self.query_one(ProgressBar).update(progress=max(0.0, min(1.0, progress.fraction)))
        self.query_one("#load-message", Label).update(progress.message)
        self.current = "load-progress"
        self.set_classes("-loading")
        self.display = True
        self._tick()

    def _tick(self) -> None:
        if self._started is not None and self.display and self.current == "load-progress":
            self.query_one("#load-elapsed", Label).update(elapsed_text(self._clock() - self._started))

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
