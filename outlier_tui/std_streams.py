"""Standard input and output at the edges of a one-shot run: a whole question
read from stdin (bytes that are not UTF-8 get a clear answer instead of a
decoding traceback) and a stdout that the reader closed (`| head`)."""

from __future__ import annotations

import os
import sys
from typing import TextIO

from engine.errors import OutlierError


class InputTextError(OutlierError):
    """Standard input cannot be read as text."""


def read_all(stream: TextIO | None) -> str:
    """All of `stream` as text; raw bytes are decoded as strict UTF-8."""
    if stream is None:
        raise InputTextError("standard input is closed: pipe the question in or pass it as an argument.")
    raw = getattr(stream, "buffer", None)
    if raw is None:  # an in-memory text stream (tests, embedding callers)
        return stream.read()
    data = raw.read()
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InputTextError(
            f"standard input is not valid UTF-8 (byte 0x{data[exc.start]:02x} at offset {exc.start}): "
            "convert it first, e.g. `iconv -f latin1 -t utf-8`."
        ) from None


def silence_stdout(out: TextIO | None) -> None:
    """Point a closed sys.stdout at /dev/null so the interpreter's final flush does not fail again."""
    if out is None or out is not sys.stdout:
        return
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, out.fileno())
        os.close(devnull)
    except (OSError, ValueError, AttributeError):
        pass
