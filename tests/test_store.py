"""The conversation store: API behaviour, crash safety (a real SIGKILL) and migrations."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import pytest

from outlier_tui.store import (
    DB_FILENAME,
    MIGRATIONS,
    SCHEMA_VERSION,
    ConversationStore,
    StoreError,
    data_dir,
    migrate,
)

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def store(tmp_path, monkeypatch):
    monkeypatch.setenv("OUTLIER_DATA_DIR", str(tmp_path / "data"))
    s = ConversationStore()
    yield s
    s.close()


def test_default_path_honours_env(store, tmp_path):
    assert data_dir() == tmp_path / "data"
    assert store.path == tmp_path / "data" / DB_FILENAME
    assert store.path.exists()


def test_wal_and_schema_version(store):
    db = sqlite3.connect(store.path)
    assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    db.close()


def test_create_get_list_rename_delete(store):
    a = store.create_chat("first")
    b = store.create_chat("second", system_prompt="be brief")
    assert store.get_chat(b.id) == b
    assert [c.id for c in store.list_chats()] == [b.id, a.id]
    store.add_message(a.id, "user", "hello")  # touching a chat moves it to the top
    assert [c.id for c in store.list_chats()] == [a.id, b.id]
    store.rename_chat(b.id, "renamed")
    assert store.get_chat(b.id).title == "renamed"
    store.set_system_prompt(a.id, "you are terse")
    assert store.get_chat(a.id).system_prompt == "you are terse"
    store.delete_chat(a.id)
    with pytest.raises(KeyError):
        store.get_chat(a.id)
    assert store.messages(a.id) == []
    assert [c.id for c in store.list_chats()] == [b.id]
    for call in (
        lambda: store.rename_chat(999, "x"),
        lambda: store.delete_chat(999),
        lambda: store.add_message(999, "user", "x"),
        lambda: store.update_message(999, "x", "complete"),
    ):
        with pytest.raises(KeyError):
            call()


def test_messages_and_statuses(store):
    chat = store.create_chat()
    u = store.add_message(chat.id, "user", "q")
    a = store.add_message(chat.id, "assistant", "", status="partial")
    store.update_message(a, "half", "partial")
    store.update_message(a, "half an answer", "cancelled")
    msgs = store.messages(chat.id)
    assert [(m.id, m.role, m.content, m.status) for m in msgs] == [
        (u, "user", "q", "complete"),
        (a, "assistant", "half an answer", "cancelled"),
    ]
    with pytest.raises(ValueError):
        store.add_message(chat.id, "robot", "x")
    with pytest.raises(ValueError):
        store.update_message(a, "x", "done")


def test_engine_messages_rules(store):
    chat = store.create_chat(system_prompt="Be kind.")
    store.add_message(chat.id, "user", "one")
    store.add_message(chat.id, "assistant", "boom", status="error")
    store.add_message(chat.id, "user", "one")  # retry of the same question
    store.add_message(chat.id, "assistant", "first answer")
    store.add_message(chat.id, "user", "two")
    store.add_message(chat.id, "assistant", "", status="cancelled")  # cancelled before any text
    store.add_message(chat.id, "user", "three")
    store.add_message(chat.id, "assistant", "cut sh", status="cancelled")
    store.add_message(chat.id, "user", "four")
    store.add_message(chat.id, "assistant", "stream", status="partial")
    assert store.engine_messages(chat.id) == [
        {"role": "system", "content": "Be kind."},
        {"role": "user", "content": "one"},
        {"role": "assistant", "content": "first answer"},
        {"role": "user", "content": "two\n\nthree"},
        {"role": "assistant", "content": "cut sh"},
        {"role": "user", "content": "four"},
        {"role": "assistant", "content": "stream"},
    ]
    bare = store.create_chat()
    store.add_message(bare.id, "user", "hi")
    assert store.engine_messages(bare.id) == [{"role": "user", "content": "hi"}]


def test_export_markdown(store):
    chat = store.create_chat("Reverse", system_prompt="line one\n\nline two")
    store.add_message(chat.id, "user", "how?")
    store.add_message(chat.id, "assistant", "```python\ns[::-1]\n```")
    store.add_message(chat.id, "user", "more")
    store.add_message(chat.id, "assistant", "and", status="cancelled")
    md = store.export_markdown(chat.id)
    assert md.startswith("# Reverse\n")
    assert "> line one\n>\n> line two" in md
    assert "## You\n\nhow?" in md
    assert "## Assistant\n\n```python\ns[::-1]\n```" in md
    assert "and\n\n*(answer stopped)*" in md


def test_two_connections_see_each_other(tmp_path):
    path = tmp_path / "c.sqlite3"
    with ConversationStore(path) as one, ConversationStore(path) as two:
        chat = one.create_chat("shared")
        two.add_message(chat.id, "user", "from two")
        assert [m.content for m in one.messages(chat.id)] == ["from two"]


def test_threads_share_one_store(store):
    chat = store.create_chat()

    def writer(n: int) -> None:
        for i in range(25):
            store.add_message(chat.id, "user", f"{n}-{i}")

    threads = [threading.Thread(target=writer, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(store.messages(chat.id)) == 100


def test_failed_write_rolls_back(store, monkeypatch):
    chat = store.create_chat()
    with pytest.raises(RuntimeError), store._write() as db:
        db.execute(
            "INSERT INTO messages (chat_id, role, content, status, created_at) "
            "VALUES (?, 'user', 'ghost', 'complete', 0)",
            (chat.id,),
        )
        raise RuntimeError("crash inside the transaction")
    assert store.messages(chat.id) == []


def test_migrates_from_v1(tmp_path):
    """A database written by schema version 1 opens, migrates and keeps its data."""
    path = tmp_path / "old.sqlite3"
    db = sqlite3.connect(path, isolation_level=None)
    assert migrate(db, target=1) == 1
    db.execute("INSERT INTO chats (title, created_at, updated_at) VALUES ('old chat', 1.0, 2.0)")
    db.execute("INSERT INTO messages (chat_id, role, content, created_at) VALUES (1, 'user', 'hi', 1.5)")
    db.execute("INSERT INTO messages (chat_id, role, content, created_at) VALUES (1, 'assistant', 'hello', 1.6)")
    db.close()

    with ConversationStore(path) as store:
        chat = store.get_chat(1)
        assert (chat.title, chat.system_prompt, chat.updated_at) == ("old chat", "", 2.0)
        assert [(m.role, m.content, m.status) for m in store.messages(1)] == [
            ("user", "hi", "complete"),
            ("assistant", "hello", "complete"),
        ]
        store.add_message(1, "user", "again")
    db = sqlite3.connect(path)
    assert db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION == len(MIGRATIONS)
    assert {r[1] for r in db.execute("PRAGMA index_list(messages)")} >= {"messages_by_chat"}
    db.close()


def test_newer_schema_is_refused(tmp_path):
    path = tmp_path / "new.sqlite3"
    db = sqlite3.connect(path)
    db.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    db.close()
    with pytest.raises(StoreError, match="newer"):
        ConversationStore(path)


def test_garbage_file_is_a_one_line_error(tmp_path):
    path = tmp_path / "junk.sqlite3"
    path.write_bytes(b"this is not a database at all" * 100)
    with pytest.raises(StoreError) as info:
        ConversationStore(path)
    assert "\n" not in str(info.value)


_WRITER = textwrap.dedent(
    """
    import sys, time
    from pathlib import Path
    from outlier_tui.store import ConversationStore
    store = ConversationStore(Path(sys.argv[1]))
    chat = store.create_chat("crash")
    store.add_message(chat.id, "user", "question before the crash")
    answer_id = store.add_message(chat.id, "assistant", "", status="partial")
    text = ""
    i = 0
    while True:  # stream forever; the parent kills us mid-answer
        i += 1
        text += f"tok{i} "
        store.update_message(answer_id, text, "partial")
        if i == 50:
            print(len(text), flush=True)
    """
)


def test_sigkill_mid_answer_loses_nothing_committed(tmp_path):
    path = tmp_path / "crash.sqlite3"
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen([sys.executable, "-c", _WRITER, str(path)], stdout=subprocess.PIPE, env=env, cwd=REPO)
    try:
        committed = int(proc.stdout.readline())  # 50 partial saves done
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)
        proc.stdout.close()
    assert proc.returncode == -signal.SIGKILL
    with ConversationStore(path) as store:
        (chat,) = store.list_chats()
        user, answer = store.messages(chat.id)
        assert (user.content, user.status) == ("question before the crash", "complete")
        assert answer.status == "partial"
        assert len(answer.content) >= committed
        assert answer.content.startswith("tok1 tok2 ")
        # The interrupted answer still goes to the engine as context.
        assert store.engine_messages(chat.id)[-1]["content"] == answer.content
        db = sqlite3.connect(path)
        assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        db.close()


def test_migrates_from_v3_keeping_messages_searchable(tmp_path):
    """A database made by the previous schema (v3) gains thinking, the per-chat
    thinking switch and full-text search over the messages it already had."""
    path = tmp_path / "v3.sqlite3"
    db = sqlite3.connect(path, isolation_level=None)
    assert migrate(db, target=3) == 3
    db.execute("INSERT INTO chats (title, system_prompt, created_at, updated_at) VALUES ('disks', '', 1.0, 2.0)")
    db.execute(
        "INSERT INTO messages (chat_id, role, content, status, created_at) "
        "VALUES (1, 'user', 'How fast is the SSD?', 'complete', 1.5)"
    )
    db.execute(
        "INSERT INTO messages (chat_id, role, content, status, created_at) "
        "VALUES (1, 'assistant', 'About 5 GB/s sequential.', 'partial', 1.6)"
    )
    db.close()

    with ConversationStore(path) as store:
        chat = store.get_chat(1)
        assert (chat.title, chat.enable_thinking) == ("disks", None)
        assert [(m.content, m.status, m.thinking) for m in store.messages(1)] == [
            ("How fast is the SSD?", "complete", ""),
            ("About 5 GB/s sequential.", "partial", ""),
        ]
        hits = store.search("ssd")
        assert [(h.chat_id, h.role, h.snippet) for h in hits] == [(1, "user", "How fast is the [SSD]?")]
        store.set_chat_thinking(1, False)
        assert store.get_chat(1).enable_thinking is False


def test_thinking_is_stored_apart_and_sent_back_only_when_asked(store):
    chat = store.create_chat("t")
    store.add_message(chat.id, "user", "2+2?")
    answer = store.add_message(chat.id, "assistant", "", status="partial")
    store.update_message(answer, "4", "complete", thinking="Add two and two.")
    store.update_message(answer, "4.", "complete")  # thinking kept when not given
    assert store.messages(chat.id)[1].thinking == "Add two and two."
    assert store.engine_messages(chat.id) == [
        {"role": "user", "content": "2+2?"},
        {"role": "assistant", "content": "4."},
    ]
    assert store.engine_messages(chat.id, keep_thinking=True)[1] == {
        "role": "assistant",
        "content": "4.",
        "reasoning_content": "Add two and two.",
    }
    exported = store.export_markdown(chat.id)
    assert "<details>\n<summary>Thinking</summary>\n\nAdd two and two.\n\n</details>\n\n4." in exported


def test_search_follows_edits_and_deletes(store):
    a = store.create_chat("alpha")
    b = store.create_chat("beta")
    first = store.add_message(a.id, "user", "the heatmap shows experts")
    store.add_message(b.id, "user", "prefetching experts (next layer)")
    reply = store.add_message(b.id, "assistant", "no")
    assert {h.chat_id for h in store.search("experts")} == {a.id, b.id}
    assert [h.chat_title for h in store.search("heat")] == ["alpha"]  # last word is a prefix
    assert store.search('layer) OR "x') == []  # punctuation is text, not query syntax
    assert [h.message_id for h in store.search("(next layer)")] == [reply - 1]
    store.update_message(reply, "prefetch wins", "complete")
    assert [h.message_id for h in store.search("wins")] == [reply]
    store.delete_messages_from(a.id, first)
    assert store.messages(a.id) == [] and [h.chat_id for h in store.search("experts")] == [b.id]
    store.delete_chat(b.id)
    assert store.search("experts") == [] and store.search("   ") == []


def test_search_marks_matches_apart_from_brackets_in_the_text(store):
    chat = store.create_chat("Code")
    store.add_message(chat.id, "user", "is_palindrome(xs[0]) and palindrome again")
    (hit,) = store.search("palindrome")
    assert hit.parts() == [
        ("is_", False),
        ("palindrome", True),
        ("(xs[0]) and ", False),
        ("palindrome", True),
        (" again", False),
    ]
    assert hit.snippet == "is_[palindrome](xs[0]) and [palindrome] again"  # the REPL's plain text
