"""The interactive mode in a real pseudo-terminal: the CLI as a user over SSH would run it."""

from __future__ import annotations

import os
import re
import select
import sys
import time
from pathlib import Path

import pytest

pty = pytest.importorskip("pty")

REPO = Path(__file__).resolve().parents[2]
CPR_REQUEST = b"\x1b[6n"
PROMPT_READY = b"\x1b[?2004h"
ANSI = re.compile(rb"\x1b\[[0-9;?]*[a-zA-Z]")


class Terminal:
    """Runs `outlier chat` on a pty; answers cursor-position requests like a terminal would."""

    def __init__(self, *args: str, data_dir: Path) -> None:
        env = {**os.environ, "PYTHONPATH": str(REPO), "OUTLIER_DATA_DIR": str(data_dir), "TERM": "xterm-256color"}
        env.pop("NO_COLOR", None)
        self.pid, self.fd = pty.fork()
        if self.pid == 0:  # child
            os.chdir(REPO)
            os.execve(sys.executable, [sys.executable, "-m", "outlier_tui.cli", "chat", *args], env)
        self.raw = b""
        self.typed_at = 0  # len(raw) when keys were last typed

    def read_until(self, needle: bytes, timeout: float = 30.0) -> None:
        end = time.monotonic() + timeout
        while needle not in ANSI.sub(b"", self.raw):
            if time.monotonic() > end:
                raise AssertionError(f"no {needle!r} in {self.raw[-500:]!r}")
            try:
                self._read_some()
            except OSError:  # the child closed the terminal
                raise AssertionError(f"exited before {needle!r}: {self.raw[-500:]!r}") from None

    def wait_prompt(self) -> None:
        """Wait for the prompt after the last keys typed (it turns bracketed paste on once the
        terminal is in raw mode; keys typed before that are cooked by the tty: Enter arrives as Ctrl-J).
        """
        end = time.monotonic() + 30
        while PROMPT_READY not in self.raw[self.typed_at :]:
            if time.monotonic() > end:
                raise AssertionError(f"no new prompt in {self.raw[-500:]!r}")
            self._read_some()

    def _read_some(self) -> None:
        ready, _, _ = select.select([self.fd], [], [], 0.1)
        if ready:
            data = os.read(self.fd, 65536)
            self.raw += data
            for _ in range(data.count(CPR_REQUEST)):
                os.write(self.fd, b"\x1b[1;1R")

    def type(self, text: str) -> None:
        self.typed_at = len(self.raw)
        os.write(self.fd, text.encode())

    def wait(self, timeout: float = 30.0) -> int:
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            try:
                ready, _, _ = select.select([self.fd], [], [], 0.1)
                if ready:
                    self.raw += os.read(self.fd, 65536)
            except OSError:
                pass
            pid, status = os.waitpid(self.pid, os.WNOHANG)
            if pid:
                os.close(self.fd)
                return os.waitstatus_to_exitcode(status)
        os.kill(self.pid, 9)
        raise AssertionError("the chat did not exit")

    @property
    def text(self) -> str:
        return ANSI.sub(b"", self.raw).decode("utf-8", "replace")


def test_interactive_chat_on_a_pty(tmp_path):
    term = Terminal("--plain", "--fake-engine", data_dir=tmp_path)
    term.wait_prompt()
    term.type("hello\r")
    term.read_until(b"tok/s")  # answer, then the stats line
    assert "You said: hello" in term.text
    assert b"\x1b[38;5;" in term.raw  # the code block is highlighted (256 colours)
    term.wait_prompt()
    term.type("/history\r")
    term.read_until(b"[assistant]")
    term.wait_prompt()
    term.type("\x04")  # Ctrl-D
    assert term.wait() == 0
    from outlier_tui.store import ConversationStore

    with ConversationStore(tmp_path / "chats.sqlite3") as store:
        (chat,) = store.list_chats()
        assert [m.status for m in store.messages(chat.id)] == ["complete", "complete"]
    assert (tmp_path / "plain_history").read_text().count("hello") == 1


def test_continue_the_last_chat_on_a_pty(tmp_path):
    from outlier_tui.store import ConversationStore

    with ConversationStore(tmp_path / "chats.sqlite3") as store:
        chat = store.create_chat("from the app")
        store.add_message(chat.id, "user", "asked in the app")
        store.add_message(chat.id, "assistant", "answered in the app")
    term = Terminal("--plain", "--fake-engine", "--chat", "last", data_dir=tmp_path)
    term.wait_prompt()
    term.type("/exit\r")
    assert term.wait() == 0
    assert "from the app" in term.text


def test_thinking_tab_completion_edit_and_retry_on_a_pty(tmp_path):
    """A reasoning reply (--fake-reply) shown dimmed, @path completed with Tab,
    /edit puts the typed message back in the prompt, /retry replaces the answer."""
    from outlier_tui.store import ConversationStore

    reply = tmp_path / "reply.md"
    reply.write_text("<think>\nPondering the file.\n</think>\n\nIt prints hi.\n")
    term = Terminal("--plain", "--fake-engine", "--fake-reply", str(reply), "--chat", "new", data_dir=tmp_path)
    term.wait_prompt()
    term.type("what does @tests/plain/test_tt")
    term.type("\t")
    term.read_until(b"y.py")  # the completion is drawn after the typed text
    term.type(" do\r")
    term.read_until(b"It prints hi.")
    assert "[thinking]\nPondering the file.\n[/thinking]" in term.text.replace("\r", "")
    assert b"\x1b[2mPondering" in term.raw  # dimmed
    term.wait_prompt()
    term.type("/think hide\r")
    term.wait_prompt()
    term.type("/retry\r")
    term.read_until(b"thinking\xe2\x80\xa6 hidden")
    term.wait_prompt()
    term.type("/edit\r")
    term.wait_prompt()
    assert "what does @tests/plain/test_tty.py do" in term.text.rsplit("/edit", 1)[1]
    term.type("\x15short?\r")  # Ctrl-U clears the line, then a new question
    term.read_until(b"tok/s", timeout=30)
    term.wait_prompt()
    term.type("\x04")
    assert term.wait() == 0
    with ConversationStore(tmp_path / "chats.sqlite3") as store:
        (chat,) = store.list_chats()
        messages = store.messages(chat.id)
    assert [(m.role, m.content) for m in messages] == [("user", "short?"), ("assistant", "It prints hi.\n")]
    assert messages[1].thinking == "Pondering the file."
