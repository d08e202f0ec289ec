"""What every part of the app shares: the constructor, the engine and chat session, the
main screen, the user's keymap and the state the top bar shows.

OutlierApp (main.py) is assembled from one mixin per concern; each subclasses AppBase and
names the other mixins it uses as its bases, so what a module may call is what it inherits.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from pathlib import Path

from textual.app import App
from textual.reactive import var
from textual.screen import ModalScreen, Screen

from engine.api import EngineClient, GenerationParams, ModelInfo, ProgressFn, TelemetrySnapshot
from outlier_tui.app.bindings import CHAT_ACTIONS, default_key
from outlier_tui.app.config import Traversable
from outlier_tui.app.memory_stats import MemoryHistory
from outlier_tui.app.model_state import ModelState
from outlier_tui.app.status_bar import TopBar
from outlier_tui.chat_params import CHAT_MAX_TOKENS
from outlier_tui.core.attachments import DEFAULT_LIMIT_BYTES
from outlier_tui.core.chat import SAVE_INTERVAL, ChatSession
from outlier_tui.store import Chat, ConversationStore

ResolveModel = Callable[[str | None, ProgressFn], Path | str]  # str: a name the server knows


class AppBase(App):
    """The app's shared state; the mixins add the actions."""

    # Watched in model_loading.py (status line, top bar; again on a second error) and
    # answers.py (top bar; bindings: Esc stops only while generating).
    model_state = var(ModelState.EMPTY, init=False, always_update=True)
    generating = var(False, init=False, bindings=True)  # an answer is streaming

    def __init__(
        self,
        engine: EngineClient,
        store: ConversationStore,
        model_dir: str | None = None,
        cache_bytes: int | None = None,
        theme: str | None = None,
        *,
        chat: str | int | None = None,
        resolve_model: ResolveModel | None = None,
        params: GenerationParams | None = None,
        telemetry_interval: float | None = 0.1,
        snapshot_source: Callable[[], TelemetrySnapshot] | None = None,
        clock: Callable[[], float] = time.monotonic,
        save_interval: float = SAVE_INTERVAL,
        attach_limit: int = DEFAULT_LIMIT_BYTES,
        theme_dirs: Sequence[Traversable] | None = None,
        keymap_file: Path | None = None,
        export_dir: Path | None = None,
        startup_notes: tuple[str, ...] = (),
        demo_model: bool = False,
    ) -> None:
        """engine/store are injected (tests pass a FakeEngine and a temp store).

        chat: an id, "last", "new" or None (reuse the newest chat if empty, else
        start one). resolve_model(model_dir, on_progress) -> folder, e.g. the
        demo-model builder; without it model_dir is loaded as is.
        telemetry_interval None stops the timer (tests call refresh_telemetry).
        demo_model: model_dir None means the built-in demo (an empty chat says what it is).
        """
        super().__init__()
        self.engine = engine
        self.model_dir = model_dir
        self.demo_model = demo_model  # until the user loads another folder
        self.cache_bytes = cache_bytes
        self.session = ChatSession(
            engine,
            store,
            params=params or GenerationParams(max_tokens=CHAT_MAX_TOKENS),
            clock=clock,
            save_every=save_interval,
        )
        self.attach_limit = attach_limit
        self.session.model_info = None  # set when a load finishes
        self.last_load_error: str | None = None
        self.keymap: dict[str, str] = {}  # the user's keymap, as given to set_keymap
        self.startup_warnings: list[str] = []
        self._requested_chat = chat
        self._startup_notes = startup_notes  # e.g. the chat database was moved aside
        self._requested_theme = theme
        self._resolve_model = resolve_model
        self._telemetry_interval = telemetry_interval
        self._snapshot_source = snapshot_source or engine.snapshot
        self._clock = clock
        self._theme_dirs = theme_dirs
        self._keymap_file = keymap_file
        self._export_dir = export_dir
        self._memory_history = MemoryHistory()
        self._main_screen: Screen | None = None

    @property
    def chat(self) -> Chat | None:
        """The chat on screen (read from the store: titles and settings stay current)."""
        return self.session.chat

    @property
    def params(self) -> GenerationParams:
        return self.session.params

    @property
    def model_info(self) -> ModelInfo | None:
        """The loaded model; None while none is (the session asks nothing of the engine then)."""
        return self.session.model_info if self.model_state is ModelState.READY else None

    @model_info.setter
    def model_info(self, info: ModelInfo | None) -> None:
        self.session.model_info = info

    @property
    def store(self) -> ConversationStore:
        return self.session.store

    @store.setter
    def store(self, store: ConversationStore) -> None:
        self.session.store = store

    @property
    def main_screen(self) -> Screen:
        """The chat screen, even while a dialog is on top (timers and workers use it)."""
        return self._main_screen or self.screen

    def key_for(self, binding_id: str) -> str:
        """The key currently bound to `binding_id` (after the user's keymap), for help text."""
        if binding_id in self.keymap:
            return self.keymap[binding_id].split(",")[0]
        return default_key(binding_id)

    def update_top_bar(self) -> None:
        """Redraw the top bar: chat title, model name, model state (or "generating")."""
        model = ""
        if self.model_info is not None:
            model = Path(self.model_info.path).name or self.model_info.path
        elif self.model_dir:
            model = Path(self.model_dir).name
        title = self.chat.title if self.chat else ""
        self.main_screen.query_one(TopBar).set_state(title, model, self.model_state, self.generating)

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action == "cancel_answer":
            return self.generating
        return not (action in CHAT_ACTIONS and isinstance(self.screen, ModalScreen))
