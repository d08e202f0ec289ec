"""SIGTERM and SIGHUP (an SSH session dropping) end Outlier the way Ctrl-C does:
the answer streaming is cancelled and saved with what was shown, then it exits.

install() turns both signals into Terminated, a KeyboardInterrupt, so every
path that already stops cleanly on Ctrl-C (pipe mode, `outlier generate`) does
the same here. An asyncio loop (the REPL) installs its own handlers instead,
see PlainSession.
"""

from __future__ import annotations

import signal

SIGNALS = tuple(s for s in (getattr(signal, "SIGTERM", None), getattr(signal, "SIGHUP", None)) if s)


class Terminated(KeyboardInterrupt):
    """The process was asked to stop by a signal; args[0] is its number."""

    @property
    def signum(self) -> int:
        return int(self.args[0])

    @property
    def exit_status(self) -> int:
        return 128 + self.signum


def stop_line(signum: int) -> str:
    """What a stopped command says on stderr: 'interrupted' for Ctrl-C, else the signal's name."""
    if signum == signal.SIGINT:
        return "interrupted"
    try:
        return f"stopped by {signal.Signals(signum).name}"
    except ValueError:
        return f"stopped by signal {signum}"


def _raise(signum: int, frame: object) -> None:
    raise Terminated(signum)


def install() -> None:
    """Route SIGTERM and SIGHUP to Terminated in the main thread."""
    for sig in SIGNALS:
        signal.signal(sig, _raise)
