"""The disk filling up while an answer is saved: the answer still streams in full,
the user gets one line saying it was not saved, and nothing already saved is lost."""

from __future__ import annotations

import io
import sqlite3

from engine.fake import FakeEngine
from outlier_tui.core.chat import ChatSession
from outlier_tui.plain.pipe import run_pipe

ANSWER = " ".join(["word"] * 60)


def _disk_fills_after(store, monkeypatch, good_saves: int):
    real = store.update_message
    calls = {"n": 0}

    def update_message(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] > good_saves:
            raise sqlite3.OperationalError("database or disk is full")
        return real(*args, **kwargs)

    monkeypatch.setattr(store, "update_message", update_message)
    return calls


def _engine():
    engine = FakeEngine(script=[ANSWER], token_delay=0.002)
    engine.load("fake").result()
    return engine


def test_pipe_mode_shows_the_whole_answer_and_says_it_was_not_saved(store, monkeypatch):
    engine = _engine()
    chat = store.create_chat("full disk")
    _disk_fills_after(store, monkeypatch, good_saves=0)
    out, err = io.StringIO(), io.StringIO()
    assert run_pipe(engine, "q", out, err, store=store, chat_id=chat.id, show_stats=False) == 1
    assert out.getvalue().strip() == ANSWER  # nothing the user reads is lost
    lines = err.getvalue().strip().splitlines()
    assert len(lines) == 1 and "could not be saved (database or disk is full)" in lines[0]
    user, answer = store.messages(chat.id)
    assert user.content == "q" and answer.status == "partial"  # committed before the disk filled
    engine.close()


def test_partial_saves_that_failed_are_made_good_by_the_final_save(store, monkeypatch):
    engine = _engine()
    session = ChatSession(engine, store, save_every=0.0)
    calls = _disk_fills_after(store, monkeypatch, good_saves=2)
    turn = session.send("q", lambda kind, text: None)
    for event in engine.generate(turn.messages, turn.params):
        turn.handle(event)
        if turn.save_error:  # a partial save failed; then space is freed
            monkeypatch.setattr(store, "update_message", type(store).update_message.__get__(store))
    assert calls["n"] == 3  # partial saves stopped after the failure
    result = turn.finish()
    assert result.status == "complete" and result.save_error is None
    assert store.messages(session.chat_id)[-1].content == ANSWER
    engine.close()
