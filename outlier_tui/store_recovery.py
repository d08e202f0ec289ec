"""Open the chat database so that the app and the REPL always start.

A database that cannot be used is never overwritten: a corrupt file or one
written by a newer Outlier is moved aside (with its -wal/-shm companions)
and a fresh one started; a database another process keeps locked, or a data
folder that cannot be written, leaves it alone and keeps this session's
chats in memory. Each case comes back as one notice line for the user.
"""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path

from outlier_tui.store import DB_FILENAME, SCHEMA_VERSION, ConversationStore, StoreError, data_dir

IN_MEMORY = ":memory:"
_PROBE_TIMEOUT_S = 1.0


def open_store(path: Path | None = None) -> tuple[ConversationStore, str | None]:
    """The store to use and, when it is not the usual file, a one-line notice saying why."""
    path = Path(path) if path is not None else data_dir() / DB_FILENAME
    locked, version = _probe(path)
    if locked:
        return ConversationStore(Path(IN_MEMORY)), (
            f"The chat database {path} is locked by another process; this session's chats are "
            "kept in memory only (close the other Outlier to save them)."
        )
    if version is not None and version > SCHEMA_VERSION:
        aside = move_aside(path, f"newer-v{version}")
        return ConversationStore(path), (
            f"The chat database was written by a newer Outlier (schema {version}, this one reads "
            f"{SCHEMA_VERSION}); moved it to {aside.name} untouched and started a new one."
        )
    try:
        return ConversationStore(path), None
    except StoreError as exc:
        if not _writable(path):
            return ConversationStore(Path(IN_MEMORY)), (
                f"The data folder {path.parent} cannot be written; this session's chats are kept "
                "in memory only (fix its permissions or set OUTLIER_DATA_DIR)."
            )
        if not path.is_file():
            raise
        aside = move_aside(path, "corrupt")
        try:
            store = ConversationStore(path)
        except StoreError:
            raise exc from None
        return store, (f"The chat database was unreadable; moved it to {aside.name} untouched and started a new one.")


def move_aside(path: Path, reason: str) -> Path:
    """Rename the database and its -wal/-shm files to <name>.<reason>-<time>; returns the new path."""
    stamp = time.strftime("%Y%m%d-%H%M%S")
    target = path.with_name(f"{path.name}.{reason}-{stamp}")
    n = 1
    while target.exists():
        n += 1
        target = path.with_name(f"{path.name}.{reason}-{stamp}-{n}")
    for suffix in ("-wal", "-shm"):
        companion = path.with_name(path.name + suffix)
        if companion.exists():
            companion.rename(target.with_name(target.name + suffix))
    path.rename(target)
    return target


def _probe(path: Path) -> tuple[bool, int | None]:
    """(locked by another process, schema version) from a short read-only look; a file
    SQLite cannot read gives (False, None) and is left to the caller."""
    if not path.is_file():
        return False, None
    try:
        db = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=_PROBE_TIMEOUT_S)
    except sqlite3.Error:
        return False, None
    try:
        db.execute("SELECT count(*) FROM sqlite_master").fetchall()
        return False, int(db.execute("PRAGMA user_version").fetchone()[0])
    except sqlite3.OperationalError as exc:
        return "locked" in str(exc) or "busy" in str(exc), None
    except sqlite3.Error:
        return False, None
    finally:
        db.close()


def _writable(path: Path) -> bool:
    folder = path.parent
    try:
        folder.mkdir(parents=True, exist_ok=True)
        probe = folder / f".{path.name}.write-probe"
        probe.write_bytes(b"")
        probe.unlink()
        return True
    except OSError:
        return False
