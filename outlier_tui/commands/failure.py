"""How every `outlier` command ends in failure: one line on stderr, an exit status."""

from __future__ import annotations

import sys


def fail(message: str, status: int = 1) -> int:
    print(f"outlier: {message}", file=sys.stderr)
    return status


def os_error_line(exc: OSError) -> str:
    """An OSError as the user needs it: what failed, on which file."""
    return f"{exc.strerror or exc}: {getattr(exc, 'filename', '') or ''}".rstrip(": ")
