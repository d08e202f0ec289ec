"""Slash commands of the plain REPL (/new, /system, /history, /save, /stats, /help, /exit …).

Each handler takes the session and the text after the command name and
returns False to end the session. A line starting with // is sent to the
model as a message starting with /.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Callable

from outlier_tui.plain.stats import snapshot_table
from outlier_tui.plain.turn import one_line

if TYPE_CHECKING:
    from outlier_tui.plain.session import PlainSession

KEYS_HELP = """\
Keys:
  Enter               send the message
  Alt-Enter, Esc Enter, Ctrl-J
                      insert a new line (pasted text keeps its lines)
  Up / Down           previous / next input (history is kept across sessions)
  Ctrl-C              while an answer streams: stop it (the text so far is kept)
                      at the prompt: clear the line; on an empty line press it twice to exit
  Ctrl-D              exit (on an empty line)
A line starting with // is sent as a message starting with /."""


@dataclass(frozen=True)
class Command:
    name: str
    usage: str
    summary: str
    handler: Callable[["PlainSession", str], bool]


def _new(session: "PlainSession", arg: str) -> bool:
    session.new_chat()
    session.note("New chat: the next message starts it.")
    return True


def _system(session: "PlainSession", arg: str) -> bool:
    if not arg:
        prompt = session.store.get_chat(session.chat_id).system_prompt if session.chat_id else ""
        session.note(f"System prompt: {prompt}" if prompt else "No system prompt (set one with /system TEXT).")
        return True
    chat_id = session.ensure_chat()
    if arg == "clear":
        session.store.set_system_prompt(chat_id, "")
        session.note("System prompt cleared.")
    else:
        session.store.set_system_prompt(chat_id, arg)
        session.note("System prompt set; it applies from the next message.")
    return True


def _history(session: "PlainSession", arg: str) -> bool:
    if session.chat_id is None:
        session.note("No messages yet in this chat.")
        return True
    chat = session.store.get_chat(session.chat_id)
    session.note(f"Chat #{chat.id} “{chat.title}”")
    if chat.system_prompt:
        session.write(f"[system] {chat.system_prompt}\n")
    tags = {"cancelled": " [stopped]", "error": " [failed]", "partial": " [interrupted]"}
    for m in session.store.messages(chat.id):
        who = "you" if m.role == "user" else "assistant"
        session.write(f"[{who}]{tags.get(m.status, '')} {m.content}\n")
    return True


def _chats(session: "PlainSession", arg: str) -> bool:
    chats = session.store.list_chats()[:20]
    if not chats:
        session.note("No saved chats yet.")
    for chat in chats:
        mark = "*" if chat.id == session.chat_id else " "
        when = time.strftime("%Y-%m-%d %H:%M", time.localtime(chat.updated_at))
        session.write(f"{mark}#{chat.id:<5} {when}  {chat.title}\n")
    return True


def _open(session: "PlainSession", arg: str) -> bool:
    try:
        chat = session.store.get_chat(int(arg))
    except (ValueError, KeyError):
        session.error(f"no chat #{arg or '?'}: /chats lists them, then /open ID")
        return True
    session.chat_id = chat.id
    session.last_stats = None
    session.note(f"Opened chat #{chat.id} “{chat.title}” ({len(session.store.messages(chat.id))} messages).")
    return True


def _save(session: "PlainSession", arg: str) -> bool:
    if not arg:
        session.error("usage: /save FILE (writes this chat as Markdown)")
        return True
    if session.chat_id is None:
        session.error("nothing to save yet: send a message first")
        return True
    path = Path(arg).expanduser()
    try:
        path.write_text(session.store.export_markdown(session.chat_id), encoding="utf-8")
    except OSError as exc:
        session.error(f"cannot write {path}: {exc.strerror or one_line(exc)}")
        return True
    session.note(f"Saved chat #{session.chat_id} to {path}.")
    return True


def _stats(session: "PlainSession", arg: str) -> bool:
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


def _help(session: "PlainSession", arg: str) -> bool:
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


def _exit(session: "PlainSession", arg: str) -> bool:
    return False


_LIST = [
    Command("new", "/new", "start a new chat", _new),
    Command("system", "/system [TEXT|clear]", "show, set or clear this chat's system prompt", _system),
    Command("history", "/history", "show this chat's messages", _history),
    Command("chats", "/chats", "list recent chats (id, last update, title)", _chats),
    Command("open", "/open ID", "continue chat ID", _open),
    Command("save", "/save FILE", "write this chat to FILE as Markdown", _save),
    Command("stats", "/stats [on|off]", "engine stats (tok/s, expert hits, RSS, cache); on/off: line after each answer", _stats),
    Command("help", "/help", "this help", _help),
    Command("exit", "/exit", "leave (also /quit, Ctrl-D)", _exit),
]
COMMANDS: dict[str, Command] = {c.name: c for c in _LIST}
COMMANDS["quit"] = COMMANDS["exit"]


def dispatch(session: "PlainSession", line: str) -> bool:
    """Run the slash command on `line`; returns False when the session should end."""
    name, arg = (line[1:].strip().split(maxsplit=1) + ["", ""])[:2]
    command = COMMANDS.get(name.lower())
    if command is None:
        session.error(f"unknown command /{name}: /help lists commands (start with // to send a line beginning with /)")
        return True
    return command.handler(session, arg.strip())
