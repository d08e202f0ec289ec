"""Fixtures for the Textual app's tests: a temp store and an app factory with a FakeEngine."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from app_helpers import BUNDLED_THEMES

from engine.fake import FakeEngine
from outlier_tui.app.main import OutlierApp
from outlier_tui.store import ConversationStore


@pytest.fixture
def store(tmp_path: Path):
    store = ConversationStore(tmp_path / "chats.sqlite3")
    yield store
    store.close()


@pytest.fixture
def make_app(store: ConversationStore, tmp_path: Path) -> Callable[..., OutlierApp]:
    """make_app(engine=None, **overrides): an app wired to the temp store, no timers."""

    def make(engine: FakeEngine | None = None, **overrides) -> OutlierApp:
        options = dict(
            model_dir="fake-model",
            telemetry_interval=None,
            theme_dirs=[BUNDLED_THEMES],
            keymap_file=tmp_path / "no-keymap.toml",
            export_dir=tmp_path / "exports",
            clock=lambda: 0.0,
        )
        options.update(overrides)
        return OutlierApp(engine or FakeEngine(), store, **options)

    return make
