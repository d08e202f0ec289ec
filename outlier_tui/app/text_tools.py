"""Export file names for the app's "export chat" dialog."""

from __future__ import annotations

import re
from pathlib import Path

_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


def export_path(title: str, chat_id: int, folder: Path | None = None) -> Path:
    """A file name for exporting a chat: '<folder>/outlier-<id>-<title>.md'."""
    slug = _UNSAFE.sub("-", title.strip().lower()).strip("-.")[:40] or "chat"
    return (folder or Path.cwd()) / f"outlier-{chat_id}-{slug}.md"
