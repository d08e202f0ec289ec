"""Loading a model in the background: the load worker, its progress, and the model state.

Progress comes from the engine and the demo-model build as engine.api.LoadProgress
events on their own threads; they reach the UI as LoadProgressed messages.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

from textual import work
from textual.message import Message
from textual.worker import Worker

from engine.api import LoadProgress
from outlier_tui.app.answers import Answering
from outlier_tui.app.model_state import ModelState
from outlier_tui.app.panes import Panes
from outlier_tui.app.screens import InputDialog
from outlier_tui.app.status_bar import ModelStatus
from outlier_tui.core.format import one_line


class LoadProgressed(Message):
    """A LoadProgress event, posted from the engine or resolver thread. building_demo:
    it comes from resolving the model, which only reports when it builds the demo model."""

    def __init__(self, progress: LoadProgress, building_demo: bool = False) -> None:
        super().__init__()
        self.progress = progress
        self.building_demo = building_demo


class ModelLoading(Answering, Panes):
    """Owns the load worker; `model_state` says where it is, its watcher shows it."""

    def watch_model_state(self, state: ModelState) -> None:
        # LOADING: the load worker starts the bar at zero, LoadProgressed moves it.
        status = self.main_screen.query_one(ModelStatus)
        if state is ModelState.READY:
            status.hide()
        elif state is ModelState.ERROR:
            status.show_error(self.last_load_error or "", self.key_for("load_model"))
        self.update_top_bar()

    def action_load_model(self) -> None:
        def done(path: str | None) -> None:
            if path:
                self.start_load(path)

        self.push_screen(
            InputDialog(
                "Load model folder",
                self.model_dir or "",
                placeholder="/path/to/mlx-community-model",
                hint="An MoE model folder with config.json · Esc cancels",
            ),
            done,
        )

    def start_load(self, model_dir: str | None) -> Worker:
        """Load a model in the background (the UI stays usable; progress and errors shown)."""
        return self._load(model_dir)

    def _progress_from_thread(self, progress: LoadProgress) -> None:
        """on_progress for the engine's load (called on its thread)."""
        self.post_message(LoadProgressed(progress))

    def _build_progress_from_thread(self, progress: LoadProgress) -> None:
        """on_progress for the model resolver: the demo build, on the first run."""
        self.post_message(LoadProgressed(progress, building_demo=True))

    def on_load_progressed(self, message: LoadProgressed) -> None:
        if self.model_state is ModelState.LOADING:
            self.main_screen.query_one(ModelStatus).show_progress(message.progress, message.building_demo)

    @work(exclusive=True, group="load")
    async def _load(self, model_dir: str | None) -> None:
        await self.stop_answer()
        self.model_info = None
        self.main_screen.query_one(ModelStatus).show_progress(LoadProgress(0.0, "starting"))
        self.model_state = ModelState.LOADING
        try:
            if self._resolve_model is not None:
                path = await asyncio.to_thread(self._resolve_model, model_dir, self._build_progress_from_thread)
            elif model_dir:
                path = Path(model_dir)
            else:
                raise ValueError("no model folder was given")
            future = await asyncio.to_thread(self.engine.load, str(path), self.cache_bytes, self._progress_from_thread)
            info = await asyncio.wrap_future(future)
        except Exception as exc:  # every load failure is shown, the app stays usable
            reason = one_line(exc)
            self.last_load_error = reason
            self.model_state = ModelState.ERROR
            self.notify(reason, title="Model not loaded", severity="error", timeout=10)
            return
        # The engine's last "ready" event may still be queued behind this worker; the bar
        # must not hide at whatever fraction came before it.
        self.main_screen.query_one(ModelStatus).show_progress(LoadProgress(1.0, "ready"))
        self.model_info = info
        self.demo_model = self.demo_model and model_dir is None
        self.model_dir = str(path)
        self.last_load_error = None
        self.model_state = ModelState.READY
        self.refresh_telemetry()
