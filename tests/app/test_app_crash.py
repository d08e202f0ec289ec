"""kill -9 in the middle of an answer loses nothing already complete."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

from app_helpers import ready

from outlier_tui.app.chat_view import ChatLog, UserMessage
from outlier_tui.store import ConversationStore

REPO = Path(__file__).resolve().parents[2]


def _partial_answer(db: Path) -> str:
    """The streaming answer's saved text, read-only (never races the child's schema setup)."""
    if not db.exists():
        return ""
    try:
        with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=0.1) as con:
            rows = con.execute("SELECT content FROM messages WHERE role = 'assistant'").fetchall()
    except sqlite3.Error:
        return ""
    return rows[0][0] if rows else ""


async def test_kill_9_mid_answer_keeps_history(tmp_path, make_app):
    db = tmp_path / "crash.sqlite3"
    env = dict(os.environ, PYTHONPATH=str(REPO))
    script = Path(__file__).with_name("crash_child.py")
    child = subprocess.Popen(
        [sys.executable, str(script), str(db)], cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    try:
        deadline = time.monotonic() + 60
        while "token20 " not in _partial_answer(db):
            assert child.poll() is None, child.stderr.read().decode()[-2000:]
            assert time.monotonic() < deadline, "the child never streamed an answer"
            time.sleep(0.05)
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait()

    with ConversationStore(db) as store:
        chat = store.list_chats()[0]
        user, answer = store.messages(chat.id)
        assert (user.role, user.content, user.status) == ("user", "tell me everything", "complete")
        assert answer.status == "partial" and answer.content.startswith("token0 token1 ")
        # The reopened app shows both turns and marks the answer as interrupted.
        app = make_app(chat=str(chat.id))
        app.store = store
        async with app.run_test() as pilot:
            await ready(pilot)
            assert [w.text for w in app.query(UserMessage)] == ["tell me everything"]
            widget = app.query_one(ChatLog).last_answer()
            assert widget.text == answer.content
            assert "interrupted" in str(widget.query_one(".note").render())
