"""Fenced code blocks of an answer, for "copy code block N" in every front-end."""

from __future__ import annotations

import re

_FENCE = re.compile(
    r"^(?P<indent>[ \t]{0,3})(?P<fence>`{3,}|~{3,})[^\n]*\n(?P<body>.*?)"
    r"^(?P=indent)(?P=fence)[`~]*[ \t]*$",
    re.S | re.M,
)
_OPEN_FENCE = re.compile(r"^[ \t]{0,3}(`{3,}|~{3,})[^\n]*\n(?P<body>.*)\Z", re.S | re.M)


def code_blocks(markdown: str) -> list[str]:
    """The bodies of the fenced code blocks in `markdown`, in order.

    An unclosed fence at the end (an answer stopped mid-block) counts too.
    """
    blocks, end = [], 0
    for match in _FENCE.finditer(markdown):
        blocks.append(match.group("body"))
        end = match.end()
    if open_fence := _OPEN_FENCE.search(markdown[end:]):
        blocks.append(open_fence.group("body"))
    return blocks


def code_block(markdown: str, number: int | None = None) -> str | None:
    """Block `number` (1 = first; None = the last), or None if there is no such block."""
    blocks = code_blocks(markdown)
    if number is None:
        return blocks[-1] if blocks else None
    return blocks[number - 1] if 1 <= number <= len(blocks) else None
