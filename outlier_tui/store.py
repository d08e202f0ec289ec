"""The conversation store: every chat and message, in one SQLite file.

Both UIs (the Textual app and the plain REPL) use it, so a chat started in
one continues in the other. It is built to survive a crash or `kill -9` in the
middle of an answer: each write is its own committed transaction (WAL mode),
the user's message is committed before generation starts, and the answer is
saved as "partial" while it streams, then marked complete/cancelled/error.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path

from engine.api import Message
from engine.errors import OutlierError
from engine.user_dirs import user_dir
from outlier_tui.core.format import STATUS_LABELS

DB_FILENAME = "chats.sqlite3"
ROLES = ("user", "assistant")
STATUSES = ("complete", "cancelled", "error", "partial")


class StoreError(OutlierError):
    """The chat database cannot be opened or is from a newer Outlier."""


def data_dir() -> Path:
    """Where Outlier keeps user data (chats, input history); OUTLIER_DATA_DIR overrides it."""
    return user_dir("data")


@dataclass(frozen=True)
class Chat:
    id: int
    title: str
    system_prompt: str
    created_at: float
    updated_at: float
    enable_thinking: bool | None = None  # None: what the model's template does by default


@dataclass(frozen=True)
class StoredMessage:
    id: int
    chat_id: int
    role: str
    content: str
    status: str  # "complete" | "cancelled" | "error" | "partial"
    created_at: float
    thinking: str = ""  # a reasoning model's thinking before this answer, kept apart


# Around each matched word in SearchHit.marked: control characters no message text uses
# as markup, unlike brackets (code is full of them).
MATCH_START, MATCH_END = "\x02", "\x03"


@dataclass(frozen=True)
class SearchHit:
    chat_id: int
    chat_title: str
    message_id: int
    role: str
    marked: str  # the matching words between MATCH_START and MATCH_END, with a little context

    @property
    def snippet(self) -> str:
        """The hit as plain text, the matching words in [brackets] (the REPL's /search)."""
        return self.marked.replace(MATCH_START, "[").replace(MATCH_END, "]")

    def parts(self) -> list[tuple[str, bool]]:
        """The hit as (text, is a match) runs, for a UI that highlights the matches."""
        runs: list[tuple[str, bool]] = []
        for i, chunk in enumerate(self.marked.split(MATCH_START)):
            matched, _, rest = chunk.partition(MATCH_END) if i else ("", "", chunk)
            runs += [(text, hit) for text, hit in ((matched, True), (rest, False)) if text]
        return runs


# ---- schema ----------------------------------------------------------------
# MIGRATIONS[i] takes a database at user_version i to user_version i + 1.
# Append only: never edit a migration that has shipped.


def _v1_core_tables(db: sqlite3.Connection) -> None:
    db.execute(
        """CREATE TABLE chats (
               id INTEGER PRIMARY KEY AUTOINCREMENT,
               title TEXT NOT NULL,
               created_at REAL NOT NULL,
               updated_at REAL NOT NULL)"""
    )
    db.execute(
        """CREATE TABLE messages (
               id INTEGER PRIMARY KEY AUTOINCREMENT,
               chat_id INTEGER NOT NULL REFERENCES chats(id) ON DELETE CASCADE,
               role TEXT NOT NULL,
               content TEXT NOT NULL,
               created_at REAL NOT NULL)"""
    )


def _v2_status_and_system_prompt(db: sqlite3.Connection) -> None:
    # Answers that stream in need a status so a crash leaves a readable "partial".
    db.execute("ALTER TABLE messages ADD COLUMN status TEXT NOT NULL DEFAULT 'complete'")
    db.execute("ALTER TABLE chats ADD COLUMN system_prompt TEXT NOT NULL DEFAULT ''")


def _v3_indexes(db: sqlite3.Connection) -> None:
    db.execute("CREATE INDEX IF NOT EXISTS messages_by_chat ON messages(chat_id, id)")
    db.execute("CREATE INDEX IF NOT EXISTS chats_by_update ON chats(updated_at)")


def _v4_thinking_and_search(db: sqlite3.Connection) -> None:
    # Reasoning models: thinking is stored apart from the answer, and whether
    # to think is a per-chat choice (NULL: the template's default).
    db.execute("ALTER TABLE messages ADD COLUMN thinking TEXT NOT NULL DEFAULT ''")
    db.execute("ALTER TABLE chats ADD COLUMN enable_thinking INTEGER")
    # Full-text search over every message, kept in step by triggers.
    db.execute(
        "CREATE VIRTUAL TABLE messages_fts USING fts5("
        "content, content='messages', content_rowid='id', tokenize='unicode61')"
    )
    db.execute("INSERT INTO messages_fts(messages_fts) VALUES ('rebuild')")
    db.execute(
        "CREATE TRIGGER messages_fts_insert AFTER INSERT ON messages BEGIN "
        "INSERT INTO messages_fts(rowid, content) VALUES (new.id, new.content); END"
    )
    db.execute(
        "CREATE TRIGGER messages_fts_delete AFTER DELETE ON messages BEGIN "
        "INSERT INTO messages_fts(messages_fts, rowid, content) "
        "VALUES ('delete', old.id, old.content); END"
    )
    db.execute(
        "CREATE TRIGGER messages_fts_update AFTER UPDATE OF content ON messages BEGIN "
        "INSERT INTO messages_fts(messages_fts, rowid, content) "
        "VALUES ('delete', old.id, old.content); "
        "INSERT INTO messages_fts(rowid, content) VALUES (new.id, new.content); END"
    )


MIGRATIONS: list[Callable[[sqlite3.Connection], None]] = [
    _v1_core_tables,
    _v2_status_and_system_prompt,
    _v3_indexes,
    _v4_thinking_and_search,
]
SCHEMA_VERSION = len(MIGRATIONS)


def migrate(db: sqlite3.Connection, target: int = SCHEMA_VERSION) -> int:
    """Bring `db` up to schema `target`, one migration per transaction; returns the version."""
    version = db.execute("PRAGMA user_version").fetchone()[0]
    if version > SCHEMA_VERSION:
        raise StoreError(
            f"The chat database has schema version {version}, newer than this Outlier "
            f"understands ({SCHEMA_VERSION}): upgrade Outlier or set OUTLIER_DATA_DIR elsewhere."
        )
    while version < target:
        db.execute("BEGIN IMMEDIATE")
        try:
            # Re-read under the write lock: another process may have migrated meanwhile.
            version = db.execute("PRAGMA user_version").fetchone()[0]
            if version < target:
                MIGRATIONS[version](db)
                version += 1
                db.execute(f"PRAGMA user_version = {version}")
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise
    return version


# ---- the store -------------------------------------------------------------


def _enable_wal(db: sqlite3.Connection, attempts: int = 50) -> None:
    """Switch to WAL. Two processes creating the file at once can get SQLITE_BUSY
    here without SQLite's busy handler being called, so retry briefly."""
    for attempt in range(attempts):
        try:
            db.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or attempt == attempts - 1:
                raise
            time.sleep(0.05)


class ConversationStore:
    """Chats and messages in SQLite; safe to share between threads of one process."""

    def __init__(self, path: Path | None = None) -> None:
        self.path = Path(path) if path is not None else data_dir() / DB_FILENAME
        self._lock = threading.RLock()
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            # isolation_level=None: we issue BEGIN/COMMIT ourselves.
            self._db = sqlite3.connect(str(self.path), timeout=10.0, isolation_level=None, check_same_thread=False)
        except (OSError, sqlite3.Error) as exc:
            raise StoreError(f"Cannot open the chat database {self.path}: {exc}") from None
        try:
            _enable_wal(self._db)
            # NORMAL in WAL mode: a killed process loses nothing committed; only
            # a power cut can drop the last transactions.
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._db.execute("PRAGMA foreign_keys=ON")
            migrate(self._db)
        except sqlite3.DatabaseError as exc:
            self._db.close()
            raise StoreError(
                f"The chat database {self.path} is unreadable ({exc}): move it aside and restart."
            ) from None
        except BaseException:
            self._db.close()
            raise

    # ---- helpers -----------------------------------------------------------

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        """One write transaction: all of it lands, or none of it."""
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield self._db
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    def _read(self, sql: str, params: tuple = ()) -> list[tuple]:
        with self._lock:
            return self._db.execute(sql, params).fetchall()

    @staticmethod
    def _chat(row: tuple) -> Chat:
        return Chat(
            id=row[0],
            title=row[1],
            system_prompt=row[2],
            created_at=row[3],
            updated_at=row[4],
            enable_thinking=None if row[5] is None else bool(row[5]),
        )

    @staticmethod
    def _message(row: tuple) -> StoredMessage:
        return StoredMessage(
            id=row[0], chat_id=row[1], role=row[2], content=row[3], status=row[4], created_at=row[5], thinking=row[6]
        )

    @staticmethod
    def _check_status(status: str) -> None:
        if status not in STATUSES:
            raise ValueError(f"message status must be one of {STATUSES}, not {status!r}")

    # ---- chats -------------------------------------------------------------

    def create_chat(self, title: str = "New chat", system_prompt: str = "") -> Chat:
        """Start an empty chat and return it."""
        now = time.time()
        with self._write() as db:
            cur = db.execute(
                "INSERT INTO chats (title, system_prompt, created_at, updated_at) VALUES (?, ?, ?, ?)",
                (title, system_prompt, now, now),
            )
            chat_id = cur.lastrowid
            assert chat_id is not None  # set by every INSERT
        return Chat(chat_id, title, system_prompt, now, now)

    def list_chats(self) -> list[Chat]:
        """All chats, most recently updated first."""
        rows = self._read(
            "SELECT id, title, system_prompt, created_at, updated_at, enable_thinking FROM chats "
            "ORDER BY updated_at DESC, id DESC"
        )
        return [self._chat(r) for r in rows]

    def get_chat(self, chat_id: int) -> Chat:
        """The chat with this id; KeyError if there is none."""
        rows = self._read(
            "SELECT id, title, system_prompt, created_at, updated_at, enable_thinking FROM chats WHERE id = ?",
            (chat_id,),
        )
        if not rows:
            raise KeyError(chat_id)
        return self._chat(rows[0])

    def _update_chat(self, chat_id: int, column: str, value: str | int | None) -> None:
        with self._write() as db:
            cur = db.execute(
                f"UPDATE chats SET {column} = ?, updated_at = ? WHERE id = ?",
                (value, time.time(), chat_id),
            )
            if cur.rowcount == 0:
                raise KeyError(chat_id)

    def rename_chat(self, chat_id: int, title: str) -> None:
        """Give a chat a new title."""
        self._update_chat(chat_id, "title", title)

    def set_system_prompt(self, chat_id: int, text: str) -> None:
        """Replace the chat's system prompt ("" for none)."""
        self._update_chat(chat_id, "system_prompt", text)

    def set_chat_thinking(self, chat_id: int, enable: bool | None) -> None:
        """Keep this chat's thinking switch (None: the template's default)."""
        self._update_chat(chat_id, "enable_thinking", None if enable is None else int(enable))

    def delete_chat(self, chat_id: int) -> None:
        """Delete a chat and all its messages."""
        with self._write() as db:
            db.execute("DELETE FROM messages WHERE chat_id = ?", (chat_id,))
            cur = db.execute("DELETE FROM chats WHERE id = ?", (chat_id,))
            if cur.rowcount == 0:
                raise KeyError(chat_id)

    # ---- messages ----------------------------------------------------------

    def add_message(self, chat_id: int, role: str, content: str, status: str = "complete") -> int:
        """Append a message to a chat (committed before this returns); returns its id."""
        if role not in ROLES:
            raise ValueError(f"message role must be one of {ROLES}, not {role!r}")
        self._check_status(status)
        now = time.time()
        with self._write() as db:
            cur = db.execute("UPDATE chats SET updated_at = ? WHERE id = ?", (now, chat_id))
            if cur.rowcount == 0:
                raise KeyError(chat_id)
            cur = db.execute(
                "INSERT INTO messages (chat_id, role, content, status, created_at) VALUES (?, ?, ?, ?, ?)",
                (chat_id, role, content, status, now),
            )
            assert cur.lastrowid is not None  # set by every INSERT
            return cur.lastrowid

    def update_message(self, message_id: int, content: str, status: str, thinking: str | None = None) -> None:
        """Replace a message's text and status (used while an answer streams and at
        its end), and its thinking when given."""
        self._check_status(status)
        now = time.time()
        with self._write() as db:
            row = db.execute("SELECT chat_id FROM messages WHERE id = ?", (message_id,)).fetchone()
            if row is None:
                raise KeyError(message_id)
            if thinking is None:
                db.execute("UPDATE messages SET content = ?, status = ? WHERE id = ?", (content, status, message_id))
            else:
                db.execute(
                    "UPDATE messages SET content = ?, status = ?, thinking = ? WHERE id = ?",
                    (content, status, thinking, message_id),
                )
            db.execute("UPDATE chats SET updated_at = ? WHERE id = ?", (now, row[0]))

    def delete_messages_from(self, chat_id: int, message_id: int) -> None:
        """Delete a message and every later one of its chat (an edit or a retry
        replaces the end of a conversation), in one transaction."""
        with self._write() as db:
            db.execute("DELETE FROM messages WHERE chat_id = ? AND id >= ?", (chat_id, message_id))
            db.execute("UPDATE chats SET updated_at = ? WHERE id = ?", (time.time(), chat_id))

    def delete_oldest_turn(self, chat_id: int) -> int:
        """Delete the first user message and the answers before the next one (a chat that
        outgrew the model's context); returns how many messages went. The system prompt stays."""
        users = [m.id for m in self.messages(chat_id) if m.role == "user"]
        if len(users) < 2:
            return 0
        with self._write() as db:
            gone = db.execute("DELETE FROM messages WHERE chat_id = ? AND id < ?", (chat_id, users[1])).rowcount
            db.execute("UPDATE chats SET updated_at = ? WHERE id = ?", (time.time(), chat_id))
        return gone

    def search(self, words: str, limit: int = 50) -> list[SearchHit]:
        """Messages of every chat matching all of `words` (SQLite FTS5), best first.

        Words are matched as given (each quoted), so punctuation in the query
        never reaches FTS5's query syntax; the last word also matches as a prefix.
        """
        terms = [w.replace('"', '""') for w in words.split()]
        if not terms:
            return []
        query = " ".join(f'"{t}"' for t in terms[:-1]) + (" " if len(terms) > 1 else "") + f'"{terms[-1]}"*'
        rows = self._read(
            "SELECT m.chat_id, c.title, m.id, m.role, "
            "snippet(messages_fts, 0, ?, ?, '…', 12) "
            "FROM messages_fts JOIN messages m ON m.id = messages_fts.rowid "
            "JOIN chats c ON c.id = m.chat_id "
            "WHERE messages_fts MATCH ? ORDER BY bm25(messages_fts), m.id DESC LIMIT ?",
            (MATCH_START, MATCH_END, query, limit),
        )
        return [SearchHit(r[0], r[1], r[2], r[3], " ".join(r[4].split())) for r in rows]

    def messages(self, chat_id: int) -> list[StoredMessage]:
        """A chat's messages in the order they were added."""
        rows = self._read(
            "SELECT id, chat_id, role, content, status, created_at, thinking FROM messages "
            "WHERE chat_id = ? ORDER BY id",
            (chat_id,),
        )
        return [self._message(r) for r in rows]

    def engine_messages(self, chat_id: int, keep_thinking: bool = False) -> list[Message]:
        """The conversation to send to the engine: system prompt, then user/assistant turns.

        Failed ("error") messages and empty answers are left out; cancelled and
        partial answers keep the text the user saw. Chat templates require
        roles to alternate, so two user turns left adjacent (the answer between
        them failed) are merged into one, and an exact repeat (a retry) is
        kept once. Thinking goes back only with keep_thinking (templates that
        render `reasoning_content`), as that field.
        """
        chat = self.get_chat(chat_id)
        out: list[Message] = []
        if chat.system_prompt.strip():
            out.append({"role": "system", "content": chat.system_prompt})
        for m in self.messages(chat_id):
            if m.status == "error" or not m.content.strip():
                continue
            if out and out[-1]["role"] == m.role:
                if out[-1]["content"] != m.content:
                    out[-1] = {"role": m.role, "content": out[-1]["content"] + "\n\n" + m.content}
                continue
            message: Message = {"role": m.role, "content": m.content}
            if keep_thinking and m.thinking:
                message["reasoning_content"] = m.thinking
            out.append(message)
        return out

    def export_markdown(self, chat_id: int) -> str:
        """The chat as a Markdown document (for /save and the app's export)."""
        chat = self.get_chat(chat_id)
        stamp = time.strftime("%Y-%m-%d %H:%M", time.localtime(chat.created_at))
        parts = [f"# {chat.title}", f"*Started {stamp}*"]
        if chat.system_prompt.strip():
            parts.append(
                "**System prompt:**\n\n"
                + "\n".join("> " + line if line else ">" for line in chat.system_prompt.splitlines())
            )
        for m in self.messages(chat_id):
            heading = "## You" if m.role == "user" else "## Assistant"
            body = m.content.rstrip()
            if m.thinking.strip():  # folded: GitHub and most viewers show a summary line
                body = "<details>\n<summary>Thinking</summary>\n\n" + m.thinking.strip() + "\n\n</details>\n\n" + body
            if m.status in STATUS_LABELS:
                body = (body + "\n\n" if body else "") + f"*(answer {STATUS_LABELS[m.status]})*"
            parts.append(f"{heading}\n\n{body}")
        return "\n\n".join(parts) + "\n"

    def close(self) -> None:
        """Close the database (idempotent)."""
        with self._lock, suppress(sqlite3.Error):
            self._db.close()

    def __enter__(self) -> ConversationStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
