"""Streaming an answer to a plain terminal.

Prose is written the moment it arrives. Lines inside a ``` (or ~~~) code
fence are held back and printed once, highlighted by Pygments, when the fence
closes: re-colouring text already on screen would need cursor movement that
breaks scrollback, tmux and slow links. Without colour everything streams raw.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from typing import TextIO

DEFAULT_STYLE = "monokai"
DIM = "\x1b[2m"
RED = "\x1b[31m"
RESET = "\x1b[0m"

_FENCE = re.compile(r"^( {0,3})(`{3,}|~{3,})(.*)$")


def wants_color(stream: TextIO) -> bool:
    """Colour only on a real terminal, and never when NO_COLOR is set or TERM is dumb."""
    if os.environ.get("NO_COLOR") or os.environ.get("TERM") == "dumb":
        return False
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False


def pygments_style(name: str | None) -> str:
    """`name` if Pygments knows it as a style, else the default (app themes are not Pygments styles)."""
    from pygments.styles import get_all_styles

    if name and name in set(get_all_styles()):
        return name
    return DEFAULT_STYLE


def highlight_code(code: str, language: str, style: str = DEFAULT_STYLE) -> str:
    """ANSI-highlighted code; unknown languages fall back to a guess, then to plain text."""
    from pygments import highlight
    from pygments.lexers import TextLexer, get_lexer_by_name, guess_lexer
    from pygments.util import ClassNotFound

    options = {"stripnl": False, "ensurenl": True}
    lexer = None
    if language:
        try:
            lexer = get_lexer_by_name(language, **options)
        except ClassNotFound:
            lexer = None
    if lexer is None:
        try:
            lexer = guess_lexer(code, **options)
        except ClassNotFound:
            lexer = TextLexer(**options)
    term = os.environ.get("TERM", "") + os.environ.get("COLORTERM", "")
    if "256" in term or "truecolor" in term or "24bit" in term:
        from pygments.formatters import Terminal256Formatter

        formatter = Terminal256Formatter(style=style)
    else:
        from pygments.formatters import TerminalFormatter

        formatter = TerminalFormatter()
    return highlight(code, lexer, formatter)


def _could_open_fence(partial_line: str) -> bool:
    """True while an unfinished line might still turn out to be a fence opener."""
    stripped = partial_line.lstrip(" ")
    if len(partial_line) - len(stripped) > 3:
        return False
    if stripped.startswith("```") or stripped.startswith("~~~"):
        return True
    return "```".startswith(stripped) or "~~~".startswith(stripped)


class StreamRenderer:
    """Feeds answer text to `write` as it streams, highlighting complete code blocks."""

    def __init__(self, write: Callable[[str], None], color: bool, style: str = DEFAULT_STYLE) -> None:
        self._write = write
        self.color = color
        self.style = style
        self._line = ""  # the current unfinished line
        self._emitted = 0  # characters of _line already written (prose only)
        self._fence: str | None = None  # the opening fence while inside a code block
        self._language = ""
        self._code: list[str] = []
        self.ends_with_newline = True

    def _out(self, text: str) -> None:
        if text:
            self._write(text)
            self.ends_with_newline = text.endswith("\n")

    def feed(self, text: str) -> None:
        """Accept the next piece of the answer (any size, may split lines anywhere)."""
        if not self.color:
            self._out(text)
            return
        while text:
            newline = text.find("\n")
            piece, text = (text, "") if newline < 0 else (text[: newline + 1], text[newline + 1 :])
            self._line += piece
            if self._line.endswith("\n"):
                self._complete_line(self._line)
                self._line, self._emitted = "", 0
            elif self._fence is None and not _could_open_fence(self._line):
                self._out(self._line[self._emitted :])
                self._emitted = len(self._line)

    def _complete_line(self, line: str) -> None:
        body = line[:-1]
        if self._fence is None:
            match = _FENCE.match(body) if self._emitted == 0 else None
            if match and not (match.group(2)[0] == "`" and "`" in match.group(3)):
                self._fence = match.group(2)
                self._language = match.group(3).strip().split(" ")[0] if match.group(3).strip() else ""
                self._code = []
                self._out(DIM + body + RESET + "\n")
            else:
                self._out(line[self._emitted :])
            return
        stripped = body.strip()
        if (
            stripped
            and set(stripped) == {self._fence[0]}
            and len(stripped) >= len(self._fence)
            and len(body) - len(body.lstrip(" ")) <= 3
        ):
            self._flush_code()
            self._out(DIM + body + RESET + "\n")
            self._fence = None
        else:
            self._code.append(line)

    def _flush_code(self) -> None:
        if self._code:
            self._out(highlight_code("".join(self._code), self._language, self.style))
        self._code = []

    def finish(self) -> None:
        """End of the answer: print whatever is held back (an unclosed block, a half line)."""
        if not self.color:
            return
        if self._fence is not None:
            if self._line:
                self._code.append(self._line)
            self._flush_code()
            self._fence = None
        elif self._line:
            self._out(self._line[self._emitted :])
        self._line, self._emitted = "", 0
