"""SIGTERM/SIGHUP while the app streams an answer: it is saved as shown and marked
stopped (like Esc), not left "partial" as a kill -9 leaves it."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from outlier_tui.store import ConversationStore

REPO = Path(__file__).resolve().parents[2]

CHILD = textwrap.dedent("""
    import sys
    from pathlib import Path
    sys.path.insert(0, str(Path(sys.argv[2])))
    from crash_child import ANSWER, drive
    from app_helpers import BUNDLED_THEMES
    from engine.fake import FakeEngine
    from outlier_tui import termination
    from outlier_tui.app.main import OutlierApp
    from outlier_tui.store import ConversationStore

    termination.install()  # as `outlier` does before it runs a command
    store = ConversationStore(Path(sys.argv[1]))
    app = OutlierApp(FakeEngine(script=[ANSWER], token_delay=0.005), store, model_dir="fake-model",
                     telemetry_interval=None, theme_dirs=[BUNDLED_THEMES], save_interval=0.05)
    try:
        app.run(headless=True, auto_pilot=drive)
    except termination.Terminated as exc:
        sys.exit(exc.exit_status)
""")


def _answer(db: Path) -> tuple[str, str]:
    if not db.exists():
        return "", ""
    try:
        with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=0.1) as con:
            rows = con.execute("SELECT content, status FROM messages WHERE role = 'assistant'").fetchall()
    except sqlite3.Error:
        return "", ""
    return rows[0] if rows else ("", "")


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGHUP])
def test_signal_mid_answer_saves_it_as_stopped(tmp_path, sig):
    db = tmp_path / "chats.sqlite3"
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD, str(db), str(Path(__file__).parent)],
        cwd=REPO,
        env=dict(os.environ, PYTHONPATH=str(REPO)),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + 60
        while "token20 " not in _answer(db)[0]:
            assert child.poll() is None, child.stderr.read().decode()[-2000:]
            assert time.monotonic() < deadline, "the child never streamed an answer"
            time.sleep(0.05)
        child.send_signal(sig)
        assert child.wait(timeout=60) == 128 + sig, child.stderr.read().decode()[-2000:]
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
    with ConversationStore(db) as store:
        (chat,) = store.list_chats()
        user, answer = store.messages(chat.id)
        assert user.content == "tell me everything"
        assert answer.status == "cancelled" and answer.content.startswith("token0 token1 ")
        assert "token20 " in answer.content
