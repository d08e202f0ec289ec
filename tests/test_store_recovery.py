"""A chat database that cannot be used never stops the app or the REPL, and is never
overwritten: corrupt or newer files are moved aside, a locked one is left alone."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from outlier_tui.store import DB_FILENAME, SCHEMA_VERSION, ConversationStore
from outlier_tui.store_recovery import open_store

REPO = Path(__file__).resolve().parents[1]


def _saved_chat(path: Path) -> None:
    with ConversationStore(path) as store:
        chat = store.create_chat("kept")
        store.add_message(chat.id, "user", "a question worth keeping")


def test_a_healthy_database_opens_without_a_notice(tmp_path):
    path = tmp_path / DB_FILENAME
    _saved_chat(path)
    store, notice = open_store(path)
    with store:
        assert notice is None and [c.title for c in store.list_chats()] == ["kept"]


def test_corrupt_database_is_moved_aside_untouched(tmp_path):
    path = tmp_path / DB_FILENAME
    junk = os.urandom(8192)
    path.write_bytes(junk)
    store, notice = open_store(path)
    with store:
        assert "unreadable" in notice and "moved it to" in notice
        chat = store.create_chat("new")  # a working store at the usual path
        assert store.get_chat(chat.id).title == "new"
    (aside,) = tmp_path.glob(f"{DB_FILENAME}.corrupt-*")
    assert aside.read_bytes() == junk and aside.name in notice


def test_newer_schema_is_moved_aside_with_its_wal(tmp_path):
    path = tmp_path / DB_FILENAME
    _saved_chat(path)
    db = sqlite3.connect(path)
    db.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 3}")
    db.close()
    original = path.read_bytes()
    store, notice = open_store(path)
    with store:
        assert f"schema {SCHEMA_VERSION + 3}" in notice and store.list_chats() == []
    (aside,) = [p for p in tmp_path.glob(f"{DB_FILENAME}.newer-*") if not p.name.endswith(("-wal", "-shm"))]
    assert aside.read_bytes() == original
    with sqlite3.connect(aside) as db:  # the newer Outlier's chats are all still there
        assert db.execute("SELECT title FROM chats").fetchall() == [("kept",)]


_LOCKER = textwrap.dedent("""
    import sqlite3, sys, time
    db = sqlite3.connect(sys.argv[1], isolation_level=None)
    db.execute("PRAGMA locking_mode=EXCLUSIVE")
    db.execute("BEGIN EXCLUSIVE")
    db.execute("UPDATE chats SET title = title")
    print("locked", flush=True)
    sys.stdin.read()  # hold the lock until the test closes our stdin
""")


@pytest.fixture
def locked_database(tmp_path):
    path = tmp_path / DB_FILENAME
    _saved_chat(path)
    locker = subprocess.Popen(
        [sys.executable, "-c", _LOCKER, str(path)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    assert locker.stdout.readline().strip() == "locked"
    yield path
    locker.stdin.close()
    locker.wait(timeout=30)


def test_locked_database_is_left_alone_and_chats_kept_in_memory(locked_database):
    store, notice = open_store(locked_database)
    with store:
        assert "locked by another process" in notice
        chat = store.create_chat("this session")
        store.add_message(chat.id, "user", "hello")
        (kept,) = store.list_chats()  # read back: the chat lives in this session's store
        assert kept.title == "this session" and [m.content for m in store.messages(kept.id)] == ["hello"]
    assert sorted(p.name for p in locked_database.parent.iterdir() if "corrupt" in p.name) == []


def test_the_locked_database_is_not_written(locked_database, tmp_path):
    store, _ = open_store(locked_database)
    with store:
        store.create_chat("this session")
    copy = tmp_path / "copy.sqlite3"  # read what is on disk without waiting for the lock
    copy.write_bytes(locked_database.read_bytes())
    with sqlite3.connect(copy) as db:
        assert db.execute("SELECT title FROM chats").fetchall() == [("kept",)]


def test_unwritable_data_folder_keeps_chats_in_memory(tmp_path):
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("a file where the data folder should be")
    store, notice = open_store(blocker / "data" / DB_FILENAME)
    with store:
        assert "cannot be written" in notice
        chat = store.create_chat("still works")
        store.add_message(chat.id, "user", "a question")
        store.add_message(chat.id, "assistant", "an answer")
        assert [c.title for c in store.list_chats()] == ["still works"]
        assert [(m.role, m.content) for m in store.messages(chat.id)] == [
            ("user", "a question"),
            ("assistant", "an answer"),
        ]
    assert blocker.read_text() == "a file where the data folder should be"  # nothing written there


def _pipe(data_dir: Path, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO), "OUTLIER_DATA_DIR": str(data_dir)}
    return subprocess.run(
        [sys.executable, "-m", "outlier_tui.cli", "chat", "--fake-engine", "--no-stats", *args],
        input="what now?\n",
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )


def test_pipe_mode_starts_with_a_corrupt_database_and_saves_in_a_new_one(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    (data / DB_FILENAME).write_bytes(b"garbage" * 1000)
    result = _pipe(data, "--chat", "new")
    assert result.returncode == 0, result.stderr
    assert "moved it to" in result.stderr and "Traceback" not in result.stderr
    with ConversationStore(data / DB_FILENAME) as store:
        (chat,) = store.list_chats()
        assert store.messages(chat.id)[0].content == "what now?"


def test_one_off_pipe_run_ignores_an_unwritable_data_folder(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    result = _pipe(blocker / "data")
    assert result.returncode == 0, result.stderr
    assert "outlier:" not in result.stderr and result.stdout.strip()


async def test_the_app_starts_and_shows_the_notice(tmp_path):
    """The full-screen app opens on the fresh store and tells the user what happened."""
    import sys as _sys

    _sys.path.insert(0, str(REPO / "tests" / "app"))
    from app_helpers import BUNDLED_THEMES, ready

    from engine.fake import FakeEngine
    from outlier_tui.app.main import OutlierApp

    path = tmp_path / DB_FILENAME
    path.write_bytes(b"not sqlite" * 500)
    store, notice = open_store(path)
    app = OutlierApp(
        FakeEngine(),
        store,
        model_dir="fake-model",
        telemetry_interval=None,
        theme_dirs=[BUNDLED_THEMES],
        keymap_file=tmp_path / "none.toml",
        startup_notes=(notice,),
    )
    with store:
        async with app.run_test() as pilot:
            await ready(pilot)
            assert any("moved it to" in n.message for n in app._notifications)
