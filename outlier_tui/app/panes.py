"""The screen's panes: which side panes show, the telemetry that feeds them, focus,
scrolling and the theme.

Telemetry is polled on a timer (at most 10 Hz), never per token.
"""

from __future__ import annotations

from textual.css.query import NoMatches
from textual.reactive import var

from engine.api import TelemetrySnapshot
from outlier_tui.app.base import AppBase
from outlier_tui.app.chat_view import ChatLog
from outlier_tui.app.heatmap import ExpertHeatmap
from outlier_tui.app.memory_pane import MemoryPane
from outlier_tui.app.prompt_input import PromptInput


class Panes(AppBase):
    """Pane visibility as reactive state; F2/F3 flip it, the watchers show or hide."""

    show_heatmap = var(True, init=False)
    show_memory = var(True, init=False)
    show_side = var(True, init=False)  # computed: any side pane shown

    def compute_show_side(self) -> bool:
        return self.show_heatmap or self.show_memory

    def watch_show_heatmap(self, show: bool) -> None:
        self._show_pane(self.main_screen.query_one(ExpertHeatmap), show)
        self._arrange()

    def watch_show_memory(self, show: bool) -> None:
        self._show_pane(self.main_screen.query_one(MemoryPane), show)
        self._arrange()

    def _arrange(self) -> None:
        """The memory pane alone is a few rows: it goes under the chat, which takes the width
        and the rest of the height, instead of a side column of empty rows."""
        self.main_screen.query_one("#main").set_class(self.show_memory and not self.show_heatmap, "-memory-only")

    def watch_show_side(self, show: bool) -> None:
        self.main_screen.query_one("#side").display = show

    def _show_pane(self, pane: ExpertHeatmap | MemoryPane, show: bool) -> None:
        pane.display = show
        if show:  # hidden panes are not redrawn: bring this one up to date
            self.refresh_telemetry()

    def action_toggle_heatmap(self) -> None:
        self.show_heatmap = not self.show_heatmap

    def action_toggle_memory(self) -> None:
        self.show_memory = not self.show_memory

    def refresh_telemetry(self, now: float | None = None) -> TelemetrySnapshot | None:
        """Poll the engine once and redraw the side panes (the timer calls this)."""
        try:
            heatmap = self.main_screen.query_one(ExpertHeatmap)
            memory = self.main_screen.query_one(MemoryPane)
        except NoMatches:  # the app is shutting down
            return None
        snapshot = self._snapshot_source()
        if self.show_heatmap:
            heatmap.show(snapshot)
        view = self._memory_history.update(snapshot, self._clock() if now is None else now)
        if self.show_memory:
            memory.show(view)
        return snapshot

    def action_focus_chat(self) -> None:
        self.main_screen.query_one(ChatLog).focus()

    def action_focus_prompt(self) -> None:
        self.main_screen.query_one(PromptInput).focus()

    def action_scroll_chat(self, direction: int) -> None:
        log = self.main_screen.query_one(ChatLog)
        if direction < 0:
            log.scroll_page_up(animate=False)
        else:
            log.scroll_page_down(animate=False)

    def action_set_theme(self, name: str) -> None:
        if name in self.available_themes:
            self.theme = name
