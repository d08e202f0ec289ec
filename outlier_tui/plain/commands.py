"""Slash commands of the plain REPL (/new, /system, /history, /save, /stats, /help, /exit …).

Each handler takes the REPL (see Repl) and the text after the command name and
returns False to end the session. A line starting with // is sent to the
model as a message starting with /.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol, TextIO

from engine.api import EngineClient, GenerationStats
from outlier_tui.core.attachments import Attachment, AttachmentError, read_attachment
from outlier_tui.core.chat import ChatError, ChatSession, PartFn, Turn
from outlier_tui.core.code_blocks import code_blocks
from outlier_tui.core.format import STATUS_LABELS, one_line
from outlier_tui.plain.clipboard import copy_osc52
from outlier_tui.plain.stats import snapshot_table
from outlier_tui.store import ConversationStore, SearchHit


class Repl(Protocol):
    """What a slash command may use of the REPL. Repl (session.py) is one;
    the commands name only this, so the two modules do not import each other."""

    engine: EngineClient
    store: ConversationStore
    chat: ChatSession
    out: TextIO
    show_stats: bool
    show_thinking: bool
    attach_limit: int
    attachments: list[Attachment]
    editing: bool  # the next message replaces the last one (/edit)
    search_hits: list[SearchHit]  # of the last /search, for /open to show the match
    # An answer a command asks for (/retry): the REPL streams it once the command returns.
    pending_turn: Callable[[PartFn], Turn] | None

    @property
    def chat_id(self) -> int | None: ...

    @property
    def last_stats(self) -> GenerationStats | None: ...

    def write(self, text: str) -> None: ...

    def dim(self, text: str) -> str: ...

    def note(self, text: str) -> None: ...

    def error(self, text: str) -> None: ...

    def new_chat(self) -> None: ...

    def open_chat(self, chat_id: int) -> None: ...

    def prefill_next_prompt(self, text: str) -> None: ...


KEYS_HELP = """\
Keys:
  Enter               send the message
  Alt-Enter, Esc Enter, Ctrl-J
                      insert a new line (pasted text keeps its lines)
  Up / Down           previous / next input (history is kept across sessions)
  Tab                 after @ (or /file): complete a file name
  Ctrl-C              while an answer streams: stop it (the text so far is kept)
                      at the prompt: clear the line; on an empty line press it twice to exit
  Ctrl-D              exit (on an empty line)
@path in a message attaches that file (a fenced block headed by its path).
A line starting with // is sent as a message starting with /."""


@dataclass(frozen=True)
class Command:
    name: str
    usage: str
    summary: str
    handler: Callable[[Repl, str], bool]


def _new(session: Repl, arg: str) -> bool:
    session.new_chat()
    session.note("New chat: the next message starts it.")
    return True


def _system(session: Repl, arg: str) -> bool:
    if not arg:
        prompt = session.chat.system_prompt
        session.note(f"System prompt: {prompt}" if prompt else "No system prompt (set one with /system TEXT).")
        return True
    if arg == "clear":
        session.chat.set_system_prompt("")
        session.note("System prompt cleared.")
    else:
        session.chat.set_system_prompt(arg)
        session.note("System prompt set; it applies from the next message.")
    return True


def _history(session: Repl, arg: str) -> bool:
    if session.chat_id is None:
        session.note("No messages yet in this chat.")
        return True
    chat = session.store.get_chat(session.chat_id)
    session.note(f"Chat #{chat.id} “{chat.title}”")
    if chat.system_prompt:
        session.write(f"[system] {chat.system_prompt}\n")
    for m in session.store.messages(chat.id):
        who = "you" if m.role == "user" else "assistant"
        tag = f" [{STATUS_LABELS[m.status]}]" if m.status in STATUS_LABELS else ""
        if m.thinking and session.show_thinking:
            session.write(session.dim(f"[thinking] {m.thinking}") + "\n")
        session.write(f"[{who}]{tag} {m.content}\n")
    return True


def _chats(session: Repl, arg: str) -> bool:
    chats = session.store.list_chats()[:20]
    if not chats:
        session.note("No saved chats yet.")
    for chat in chats:
        mark = "*" if chat.id == session.chat_id else " "
        when = time.strftime("%Y-%m-%d %H:%M", time.localtime(chat.updated_at))
        session.write(f"{mark}#{chat.id:<5} {when}  {chat.title}\n")
    return True


def _open(session: Repl, arg: str) -> bool:
    try:
        session.open_chat(int(arg.lstrip("#")))
    except (ValueError, KeyError):
        session.error(f"no chat #{arg or '?'}: /chats lists them, then /open ID")
        return True
    chat = session.store.get_chat(int(arg.lstrip("#")))
    session.note(f"Opened chat #{chat.id} “{chat.title}” ({len(session.store.messages(chat.id))} messages).")
    hit = next((h for h in session.search_hits if h.chat_id == chat.id), None)
    if hit is not None:  # opened from /search: show the matching message
        message = next(m for m in session.store.messages(chat.id) if m.id == hit.message_id)
        who = "you" if message.role == "user" else "assistant"
        session.write(f"[{who}] {message.content}\n")
    session.search_hits = []
    return True


def _save(session: Repl, arg: str) -> bool:
    if not arg:
        session.error("usage: /save FILE (writes this chat as Markdown)")
        return True
    try:
        path = session.chat.export(Path(arg))
    except ChatError as exc:
        session.error(str(exc))
        return True
    session.note(f"Saved chat #{session.chat_id} to {path}.")
    return True


def _stats(session: Repl, arg: str) -> bool:
    if arg in ("on", "off"):
        session.show_stats = arg == "on"
        session.note(f"Per-answer stats line {arg}.")
        return True
    if arg:
        session.error("usage: /stats, /stats on or /stats off")
        return True
    try:
        snap = session.engine.snapshot()
    except Exception as exc:  # the engine may be gone after a failure
        session.error(f"no stats available: {one_line(exc)}")
        return True
    session.write(snapshot_table(snap, session.last_stats) + "\n")
    return True


def _think(session: Repl, arg: str) -> bool:
    if arg in ("show", "hide"):
        session.show_thinking = arg == "show"
        session.note(f"Thinking is {'shown dimmed' if session.show_thinking else 'hidden'}.")
        return True
    if arg in ("on", "off"):
        try:
            session.chat.set_thinking(arg == "on")
        except ChatError as exc:
            session.error(str(exc))
            return True
        session.note(f"Thinking {arg} for this chat (from the next message).")
        return True
    if arg:
        session.error("usage: /think on|off (the model thinks or not), /think show|hide (the display)")
        return True
    chat = session.chat
    if not chat.model_thinks:
        session.note("This model does not think before answering.")
        return True
    enabled = chat.thinking_enabled()
    state = "the template's default" if enabled is None else ("on" if enabled else "off")
    switch = "/think on|off switches it" if chat.can_switch_thinking else "its template has no switch"
    session.note(f"Thinking: {state} ({switch}); shown: {'yes' if session.show_thinking else 'no'}.")
    return True


def _file(session: Repl, arg: str) -> bool:
    if not arg:
        names = ", ".join(a.shown_path for a in session.attachments) or "none"
        session.note(f"Files for the next message: {names}. Usage: /file PATH")
        return True
    try:
        attachment = read_attachment(arg, limit_bytes=session.attach_limit)
    except AttachmentError as exc:
        session.error(str(exc))
        return True
    session.attachments.append(attachment)
    session.note(f"{arg} ({len(attachment.text)} characters) goes with your next message.")
    return True


def _edit(session: Repl, arg: str) -> bool:
    last = session.chat.last_user_draft()
    if last is None:
        session.error("nothing to edit yet: send a message first")
        return True
    session.editing = True
    session.prefill_next_prompt(last)
    session.note("Edit your last message and press Enter: it and its answer are replaced (an empty line cancels).")
    return True


def _trim(session: Repl, arg: str) -> bool:
    try:
        gone = session.chat.trim_oldest()
    except ChatError as exc:
        session.error(str(exc))
        return True
    session.note(f"Dropped the oldest turn ({gone} messages); /retry answers the last message again.")
    return True


def _retry(session: Repl, arg: str) -> bool:
    session.pending_turn = session.chat.retry
    return True


def _search(session: Repl, arg: str) -> bool:
    if not arg:
        session.error("usage: /search WORDS (all chats; then /open ID)")
        return True
    hits = session.store.search(arg, limit=20)
    if not hits:
        session.note(f"No message in any chat matches “{arg}”.")
        return True
    for hit in hits:
        who = "you" if hit.role == "user" else "assistant"
        session.write(f"#{hit.chat_id:<5} {hit.chat_title} — [{who}] {hit.snippet}\n")
    session.search_hits = hits
    session.prefill_next_prompt(f"/open {hits[0].chat_id}")
    session.note("Enter opens the first hit's chat at the match; change the id for another.")
    return True


def _copy(session: Repl, arg: str) -> bool:
    answer = session.chat.last_answer()
    blocks = code_blocks(answer.content) if answer is not None else []
    if not blocks:
        session.error("the last answer has no code block to copy")
        return True
    try:
        number = int(arg) if arg else len(blocks)
    except ValueError:
        session.error("usage: /copy [N] (the Nth code block of the last answer; default the last)")
        return True
    if not 1 <= number <= len(blocks):
        session.error(f"the last answer has {len(blocks)} code block(s): /copy 1 to /copy {len(blocks)}")
        return True
    copy_osc52(session.out, blocks[number - 1])
    session.note(
        f"Copied code block {number} ({len(blocks[number - 1].splitlines())} lines) to the clipboard (OSC 52)."
    )
    return True


def _help(session: Repl, arg: str) -> bool:
    width = max(len(c.usage) for c in COMMANDS.values())
    lines = ["Commands:"]
    seen = set()
    for command in COMMANDS.values():
        if command.name in seen:
            continue
        seen.add(command.name)
        lines.append(f"  {command.usage:<{width}}  {command.summary}")
    session.write("\n".join(lines) + "\n" + KEYS_HELP + "\n")
    return True


def _exit(session: Repl, arg: str) -> bool:
    return False


_LIST = [
    Command("new", "/new", "start a new chat", _new),
    Command("system", "/system [TEXT|clear]", "show, set or clear this chat's system prompt", _system),
    Command("history", "/history", "show this chat's messages", _history),
    Command("chats", "/chats", "list recent chats (id, last update, title)", _chats),
    Command("open", "/open ID", "continue chat ID", _open),
    Command("save", "/save FILE", "write this chat to FILE as Markdown", _save),
    Command(
        "think", "/think [on|off|show|hide]", "thinking of reasoning models: on/off for this chat, show/hide it", _think
    ),
    Command("file", "/file PATH", "attach a file to the next message (Tab completes)", _file),
    Command("edit", "/edit", "edit and resend your last message (its answer is replaced)", _edit),
    Command("retry", "/retry", "regenerate the last answer", _retry),
    Command("trim", "/trim", "drop the oldest turn (a chat that outgrew the model's context)", _trim),
    Command("search", "/search WORDS", "search every chat; Enter then opens the chat at the match", _search),
    Command("copy", "/copy [N]", "copy code block N of the last answer (default: the last) via OSC 52", _copy),
    Command(
        "stats",
        "/stats [on|off]",
        "engine stats (tok/s, expert hits, RSS, cache); on/off: line after each answer",
        _stats,
    ),
    Command("help", "/help", "this help", _help),
    Command("exit", "/exit", "leave (also /quit, Ctrl-D)", _exit),
]
COMMANDS: dict[str, Command] = {c.name: c for c in _LIST}
COMMANDS["quit"] = COMMANDS["exit"]


def dispatch(session: Repl, line: str) -> bool:
    """Run the slash command on `line`; returns False when the session should end."""
    name, arg = (line[1:].strip().split(maxsplit=1) + ["", ""])[:2]
    command = COMMANDS.get(name.lower())
    if command is None:
        session.error(f"unknown command /{name}: /help lists commands (start with // to send a line beginning with /)")
        return True
    return command.handler(session, arg.strip())
