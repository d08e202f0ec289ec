"""The Outlier chat app: layout and start-up; the actions live in one module per concern.

    base.py           constructor, shared state (engine, chat session, model state), top bar
    answers.py        sending, the answer worker, retry, edit, stop
    chats.py          open, new, list, rename, delete, export, system prompt, search
    model_loading.py  the load worker, its progress, the model state's watcher
    panes.py          side panes (reactive visibility), telemetry timer, focus, theme
    clipboard.py      copy the last answer or a code block
    commands.py       the command palette, built from the bindings
    bindings.py       the key bindings (footer, keymap and palette read them)

Threads (README, "How it works"): this runs on Textual's asyncio loop and never blocks on
the model. Answers come from an exclusive async worker awaiting the engine's
stream; telemetry is polled on a timer (at most 10 Hz), never per token.
"""

from __future__ import annotations

from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical
from textual.widgets import Footer

from engine.api import LoadProgress
from outlier_tui.app.answers import Answering
from outlier_tui.app.bindings import APP_BINDINGS, binding_ids
from outlier_tui.app.chat_view import ChatLog
from outlier_tui.app.chats import ChatActions
from outlier_tui.app.clipboard import ClipboardActions
from outlier_tui.app.commands import PaletteCommands
from outlier_tui.app.heatmap import ExpertHeatmap
from outlier_tui.app.keymap import load_keymap
from outlier_tui.app.memory_pane import MemoryPane
from outlier_tui.app.model_loading import ModelLoading
from outlier_tui.app.panes import Panes
from outlier_tui.app.prompt_input import PromptInput
from outlier_tui.app.status_bar import ModelStatus, TopBar
from outlier_tui.app.themes import load_themes, pick_theme


class OutlierApp(ChatActions, ModelLoading, Answering, Panes, PaletteCommands, ClipboardActions):
    """Full-screen chat with a live view of the engine's expert cache and memory."""

    CSS_PATH = "outlier.tcss"
    TITLE = "Outlier"
    HORIZONTAL_BREAKPOINTS = [(0, "-narrow"), (120, "-wide")]
    BINDINGS = APP_BINDINGS

    def compose(self) -> ComposeResult:
        yield TopBar(id="top-bar")
        with Horizontal(id="main"):
            with Vertical(id="chat-pane"):
                yield ChatLog(id="chat-log")
                yield ModelStatus(id="model-status", clock=self._clock)
                yield PromptInput(id="prompt")
            with Vertical(id="side"):
                heatmap = ExpertHeatmap(id="heatmap")
                heatmap.border_title = "Expert cache"
                yield heatmap
                memory = MemoryPane(id="memory")
                memory.border_title = "Memory"
                yield memory
        yield Footer()

    async def on_mount(self) -> None:
        self._main_screen = self.screen
        themes, warnings = load_themes(self._theme_dirs)
        for theme in themes.values():
            self.register_theme(theme)
        name, warning = pick_theme(self._requested_theme, set(self.available_themes))
        self.theme = name
        self.keymap, keymap_warnings = load_keymap(self._keymap_file, binding_ids())
        self.set_keymap(self.keymap)
        self.startup_warnings = warnings + keymap_warnings + ([warning] if warning else [])
        for text in self.startup_warnings:
            self.notify(text, title="Settings", severity="warning", timeout=10)
        for text in self._startup_notes:
            self.notify(text, title="Chats", severity="warning", timeout=20)
        self.main_screen.query_one(ModelStatus).show_progress(LoadProgress(0.0, "waiting for the screen"))
        await self.open_initial_chat()
        self.action_focus_prompt()
        if self._telemetry_interval:
            self.set_interval(self._telemetry_interval, self.refresh_telemetry)
        self.refresh_telemetry()
        # Load only once the first frame is on screen, so the user sees progress.
        self.call_after_refresh(self.start_load, self.model_dir)
