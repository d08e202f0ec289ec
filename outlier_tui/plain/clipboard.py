"""Copy to the user's clipboard with OSC 52: works over SSH, no local clipboard tool needed."""

from __future__ import annotations

import base64
import os
from typing import TextIO


def osc52(text: str, in_tmux: bool = False) -> str:
    """The escape sequence that asks the terminal to put `text` on the clipboard.
    Inside tmux it is wrapped so tmux passes it on to the outer terminal."""
    sequence = "\x1b]52;c;" + base64.b64encode(text.encode("utf-8")).decode("ascii") + "\x07"
    if in_tmux:
        return "\x1bPtmux;" + sequence.replace("\x1b", "\x1b\x1b") + "\x1b\\"
    return sequence


def copy_osc52(out: TextIO, text: str) -> None:
    out.write(osc52(text, in_tmux=bool(os.environ.get("TMUX"))))
    out.flush()
