"""Warnings and errors of one kind logged once per interval, not once per event.

A flood (a client hammering a full server, an accept loop out of files) would
otherwise write the same line thousands of times a second and fill the disk.
The first record of a kind passes; the next ones within `interval` seconds are
counted and dropped; the first after it says how many were dropped. A kind is
the logger, the message template and the exception type. Info and debug
records (uvicorn's access log) always pass.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable

INTERVAL = 10.0
LOGGERS = ("uvicorn.error", "asyncio", "outlier.serve")


class OncePerInterval(logging.Filter):
    def __init__(self, interval: float = INTERVAL, clock: Callable[[], float] = time.monotonic) -> None:
        super().__init__()
        self.interval = interval
        self._clock = clock
        self._lock = threading.Lock()
        self._kinds: dict[tuple, list] = {}  # kind -> [time it last passed, dropped since]

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno < logging.WARNING:
            return True
        exc_type = record.exc_info[0].__name__ if record.exc_info and record.exc_info[0] else None
        kind = (record.name, str(record.msg), exc_type)
        now = self._clock()
        with self._lock:
            seen = self._kinds.get(kind)
            if seen is not None and now - seen[0] < self.interval:
                seen[1] += 1
                return False
            dropped, since = (seen[1], seen[0]) if seen is not None else (0, now)
            self._kinds[kind] = [now, 0]
            if len(self._kinds) > 1000:  # forget kinds not seen for an interval
                self._kinds = {k: v for k, v in self._kinds.items() if now - v[0] < self.interval}
        if dropped:
            record.msg = f"{record.getMessage()} ({dropped} more like this in the last {now - since:.0f} s)"
            record.args = None
        return True


def install(loggers: Iterable[str] = LOGGERS, interval: float = INTERVAL) -> OncePerInterval:
    """Put one shared filter on each named logger (records are filtered where they are logged)."""
    limit = OncePerInterval(interval)
    for name in loggers:
        logging.getLogger(name).addFilter(limit)
    return limit
