"""Child process for the kill -9 test: runs the app headless, sends a message, streams forever.

Usage: python tests/app/crash_child.py DB_PATH
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

from app_helpers import BUNDLED_THEMES

from engine.fake import FakeEngine
from outlier_tui.app.main import OutlierApp
from outlier_tui.app.prompt_input import PromptInput
from outlier_tui.store import ConversationStore

ANSWER = " ".join(f"token{i}" for i in range(100_000))


async def drive(pilot) -> None:
    app = pilot.app
    await pilot.pause()
    await app.workers.wait_for_complete()
    prompt = app.query_one(PromptInput)
    prompt.insert("tell me everything")
    await pilot.press("enter")
    await asyncio.sleep(3600)  # the parent kills us mid-answer


def main() -> None:
    store = ConversationStore(Path(sys.argv[1]))
    engine = FakeEngine(script=[ANSWER], token_delay=0.005)
    app = OutlierApp(
        engine, store, model_dir="fake-model", telemetry_interval=None, theme_dirs=[BUNDLED_THEMES], save_interval=0.05
    )
    app.run(headless=True, auto_pilot=drive)


if __name__ == "__main__":
    main()
