"""Small text helpers for the chat: code-block extraction and export file names."""

from __future__ import annotations

import re
from pathlib import Path

_FENCE = re.compile(r"^(?P<indent>[ \t]{0,3})(?P<fence>`{3,}|~{3,})[^\n]*\n(?P<body>.*?)"
                    r"^(?P=indent)(?P=fence)[`~]*[ \t]*$", re.S | re.M)
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


def code_blocks(markdown: str) -> list[str]:
    """The bodies of the fenced code blocks in `markdown`, in order."""
    return [m.group("body") for m in _FENCE.finditer(markdown)]


def last_code_block(markdown: str) -> str | None:
    """The last fenced code block's body, or None if there is none.

    An unclosed fence at the end (an answer stopped mid-block) counts too.
    """
    blocks = code_blocks(markdown)
    tail = markdown[_closed_fences_end(markdown):]
    open_fence = re.search(r"^[ \t]{0,3}(`{3,}|~{3,})[^\n]*\n(?P<body>.*)\Z", tail, re.S | re.M)
    if open_fence:
        return open_fence.group("body")
    return blocks[-1] if blocks else None


def _closed_fences_end(markdown: str) -> int:
    end = 0
    for m in _FENCE.finditer(markdown):
        end = m.end()
    return end


def export_path(title: str, chat_id: int, folder: Path | None = None) -> Path:
    """A file name for exporting a chat: '<folder>/outlier-<id>-<title>.md'."""
    slug = _UNSAFE.sub("-", title.strip().lower()).strip("-.")[:40] or "chat"
    return (folder or Path.cwd()) / f"outlier-{chat_id}-{slug}.md"


def chat_title_from(text: str, limit: int = 40) -> str:
    """A chat title from the first user message: its first line, shortened."""
    line = next((ln.strip() for ln in text.splitlines() if ln.strip()), "New chat")
    return line if len(line) <= limit else line[: limit - 1].rstrip() + "…"
