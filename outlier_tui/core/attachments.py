"""`@path` in a message attaches that file: it goes to the model as a fenced
block headed by its path, with the language from its extension.

A message is built whole or not at all: a directory, a binary or unreadable
file, or one over the size limit stops it with a one-line reason, so nothing
half-built is ever sent. `@word` that names no file and does not look like a
path (`@dataclass`, `@user`) stays text; inside a fenced block nothing expands.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

from engine.errors import OutlierError

DEFAULT_LIMIT_BYTES = 256 * 1024
# `@` at the start or after whitespace or an opening bracket, then a path (no spaces).
MENTION = re.compile(r"(?:(?<=^)|(?<=[\s(\[{]))@(?P<path>[^\s`'\"(){}\[\],;]+)", re.M)
_TRAILING_PUNCT = ".:!?"
_FENCE_LINE = re.compile(r"^[ \t]{0,3}(`{3,}|~{3,})")

LANGUAGES = {
    ".py": "python",
    ".pyi": "python",
    ".js": "javascript",
    ".mjs": "javascript",
    ".ts": "typescript",
    ".tsx": "tsx",
    ".jsx": "jsx",
    ".rs": "rust",
    ".go": "go",
    ".c": "c",
    ".h": "c",
    ".cc": "cpp",
    ".cpp": "cpp",
    ".hpp": "cpp",
    ".java": "java",
    ".kt": "kotlin",
    ".swift": "swift",
    ".rb": "ruby",
    ".php": "php",
    ".cs": "csharp",
    ".sh": "bash",
    ".bash": "bash",
    ".zsh": "zsh",
    ".fish": "fish",
    ".ps1": "powershell",
    ".sql": "sql",
    ".html": "html",
    ".css": "css",
    ".scss": "scss",
    ".json": "json",
    ".toml": "toml",
    ".yaml": "yaml",
    ".yml": "yaml",
    ".xml": "xml",
    ".md": "markdown",
    ".tex": "latex",
    ".lua": "lua",
    ".r": "r",
    ".jl": "julia",
    ".hs": "haskell",
    ".ml": "ocaml",
    ".ex": "elixir",
    ".exs": "elixir",
    ".erl": "erlang",
    ".scala": "scala",
    ".dart": "dart",
    ".zig": "zig",
    ".nim": "nim",
    ".vue": "vue",
    ".ini": "ini",
    ".cfg": "ini",
    ".dockerfile": "dockerfile",
    ".mk": "make",
    ".cmake": "cmake",
    ".proto": "protobuf",
    ".graphql": "graphql",
    ".diff": "diff",
    ".patch": "diff",
    ".csv": "csv",
    ".txt": "text",
}
NAMED_LANGUAGES = {"Dockerfile": "dockerfile", "Makefile": "make", "CMakeLists.txt": "cmake"}


class AttachmentError(OutlierError):
    """A file named with @path cannot be attached; the message is not sent."""


@dataclass(frozen=True)
class Attachment:
    shown_path: str  # as the user wrote it
    path: Path
    text: str


def language_for(path: Path) -> str:
    return NAMED_LANGUAGES.get(path.name) or LANGUAGES.get(path.suffix.lower(), "")


def read_attachment(shown_path: str, cwd: Path | None = None, limit_bytes: int = DEFAULT_LIMIT_BYTES) -> Attachment:
    """The file's text, or AttachmentError saying why it cannot be attached."""
    path = Path(os.path.expanduser(shown_path))
    if not path.is_absolute():
        path = (cwd or Path.cwd()) / path
    if path.is_dir():
        raise AttachmentError(f"@{shown_path} is a folder: attach files one by one.")
    try:
        size = path.stat().st_size
    except FileNotFoundError:
        raise AttachmentError(f"@{shown_path}: no such file.") from None
    except OSError as exc:
        raise AttachmentError(f"@{shown_path} cannot be read: {exc.strerror or exc}.") from None
    if size > limit_bytes:
        raise AttachmentError(
            f"@{shown_path} is {size / 1024:.1f} KB, over the {limit_bytes / 1024:g} KB limit for "
            "attachments (--attach-limit-kb raises it)."
        )
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise AttachmentError(f"@{shown_path} cannot be read: {exc.strerror or exc}.") from None
    if b"\0" in data[:8192]:
        raise AttachmentError(f"@{shown_path} is a binary file: only text files can be attached.")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise AttachmentError(f"@{shown_path} is not UTF-8 text: only text files can be attached.") from None
    return Attachment(shown_path, path, text)


def fenced(attachment: Attachment) -> str:
    """The file as the model sees it: its path, then a fence long enough for its text."""
    longest = max((len(m) for m in re.findall(r"`{3,}", attachment.text)), default=2)
    fence = "`" * (longest + 1)
    body = attachment.text if attachment.text.endswith("\n") else attachment.text + "\n"
    return f"{attachment.shown_path}\n{fence}{language_for(attachment.path)}\n{body}{fence}"


def _mentions(text: str) -> list[str]:
    """Paths after `@`, outside fenced blocks, trailing sentence punctuation dropped."""
    found, in_fence = [], False
    for line in text.splitlines():
        if _FENCE_LINE.match(line):
            in_fence = not in_fence
            continue
        if in_fence:
            continue
        for match in MENTION.finditer(line):
            found.append(match.group("path").rstrip(_TRAILING_PUNCT) or match.group("path"))
    return found


def _looks_like_path(word: str) -> bool:
    return "/" in word or word.startswith("~") or bool(re.search(r"\.[A-Za-z0-9]{1,8}$", word))


def expand_attachments(
    text: str, cwd: Path | None = None, limit_bytes: int = DEFAULT_LIMIT_BYTES
) -> tuple[str, list[Attachment]]:
    """The message with every attached file appended as a fenced block (each once).

    Raises AttachmentError (one line) for the first file that cannot be attached.
    """
    base = cwd or Path.cwd()
    attachments: list[Attachment] = []
    seen: set[Path] = set()
    for word in _mentions(text):
        candidate = Path(os.path.expanduser(word))
        exists = (candidate if candidate.is_absolute() else base / candidate).exists()
        if not exists and not _looks_like_path(word):
            continue  # `@decorator`, `@someone`: just text
        attachment = read_attachment(word, base, limit_bytes)
        if attachment.path.resolve() not in seen:
            seen.add(attachment.path.resolve())
            attachments.append(attachment)
    return with_attachments(text, attachments), attachments


def with_attachments(text: str, attachments: list[Attachment]) -> str:
    """The message followed by each attached file as a fenced block."""
    if not attachments:
        return text
    return text.rstrip() + "\n\n" + "\n\n".join(fenced(a) for a in attachments)


def complete_path(partial: str, cwd: Path | None = None, limit: int = 200) -> list[str]:
    """Completions for the path after `@` (folders end with '/'), sorted; hidden
    files only when the partial name starts with a dot."""
    base = cwd or Path.cwd()
    expanded = os.path.expanduser(partial)
    folder_part, _, name_part = expanded.rpartition("/")
    shown_folder = partial[: len(partial) - len(name_part)]
    folder = Path(folder_part + "/" if folder_part or expanded.startswith("/") else ".")
    if not folder.is_absolute():
        folder = base / folder
    try:
        entries = sorted(os.scandir(folder), key=lambda e: e.name)
    except OSError:
        return []
    out = []
    for entry in entries:
        if not entry.name.startswith(name_part):
            continue
        if entry.name.startswith(".") and not name_part.startswith("."):
            continue
        try:
            is_dir = entry.is_dir()
        except OSError:
            is_dir = False
        out.append(shown_folder + entry.name + ("/" if is_dir else ""))
        if len(out) >= limit:
            break
    return out


_BLOCK_HEADER = re.compile(r"\n\n(?P<path>[^\n]+)\n(?P<fence>`{3,})[^\n`]*\n")


def strip_attachments(message: str) -> str:
    """The text the user typed, from a message built by expand_attachments: the
    trailing blocks of files it mentions with @path are taken off (for editing)."""
    while True:
        for header in reversed(list(_BLOCK_HEADER.finditer(message))):
            head, fence, path = message[: header.start()], header.group("fence"), header.group("path")
            tail = message[header.end() :]
            # A fence longer than any backtick run in the file: it closes only at the end.
            if tail.endswith("\n" + fence) and fence not in tail[: -len(fence)] and path in _mentions(head):
                message = head
                break
        else:
            return message
