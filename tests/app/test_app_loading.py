"""Model loading in the app: the engine's LoadProgress events drive a ProgressBar."""

from __future__ import annotations

import threading

from app_helpers import ready, wait_until
from textual.widgets import Label, ProgressBar

from engine.api import LoadProgress
from outlier_tui.app.status_bar import ModelStatus, TopBar


async def test_load_progress_shows_in_a_progress_bar_until_ready(make_app):
    release = threading.Event()

    def resolve(model_dir, on_progress):  # as the demo build does, on its own thread
        on_progress(LoadProgress(0.4, "building the demo model"))
        release.wait(10)
        return model_dir

    app = make_app(resolve_model=resolve)
    async with app.run_test(size=(100, 30)) as pilot:
        status = app.query_one(ModelStatus)
        bar = status.query_one(ProgressBar)
        try:
            await wait_until(lambda: bar.progress == 0.4)
            await pilot.pause()
            assert app.model_state == "loading" and status.display
            assert status.visible_content.id == "load-progress"
            assert bar.total == 1.0 and bar.percentage == 0.4
            assert str(status.query_one("#load-message", Label).render()) == "building the demo model"
            assert "loading" in str(app.query_one(TopBar).render())
        finally:
            release.set()
        await ready(pilot)
        assert app.model_state == "ready" and not status.display
        assert bar.progress == 1.0  # the engine's last event ("ready") reached the bar before it hid


async def test_a_second_load_starts_the_bar_from_zero(make_app):
    release = threading.Event()
    asked: list[str] = []

    def resolve(model_dir, on_progress):
        asked.append(model_dir)
        if len(asked) > 1:
            release.wait(10)
        return model_dir

    app = make_app(resolve_model=resolve)
    async with app.run_test(size=(100, 30)) as pilot:
        await ready(pilot)
        status = app.query_one(ModelStatus)
        bar = status.query_one(ProgressBar)
        assert bar.progress == 1.0
        try:
            app.start_load("/models/other")
            await wait_until(lambda: len(asked) == 2)
            await pilot.pause()
            assert app.model_state == "loading" and status.display and bar.progress == 0.0
            assert str(status.query_one("#load-message", Label).render()) == "starting"
        finally:
            release.set()
        await ready(pilot)
        assert app.model_info.path == "/models/other" and not status.display
