"""The per-request event channel between the engine thread and a UI."""

from __future__ import annotations

import asyncio
import queue
import threading
from collections.abc import Callable, Iterator

from engine.api import GenerationDone, GenerationEvent, GenerationFailed

_END = object()


class EventStream:
    """Events of one request, consumable from a thread (`for`) or asyncio (`async for`)."""

    def __init__(self) -> None:
        self._queue: queue.SimpleQueue = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._listener: Callable[[GenerationEvent], None] | None = None

    def put(self, event: GenerationEvent) -> None:
        with self._lock:
            listener = self._listener
            if listener is None:
                self._queue.put(event)
                if isinstance(event, (GenerationDone, GenerationFailed)):
                    self._queue.put(_END)
                return
        listener(event)

    def listen(self, listener: Callable[[GenerationEvent], None]) -> None:
        """From now on call listener(event) on the thread that puts each event (events
        already put first, in order) instead of queueing them. For asyncio servers: no
        thread per request and no extra thread hop per token; listener must be quick."""
        with self._lock:
            while (event := self._take()) is not None:
                listener(event)
            self._listener = listener

    def _take(self) -> GenerationEvent | None:
        try:
            event = self._queue.get_nowait()
        except queue.Empty:
            return None
        return None if event is _END else event

    def __iter__(self) -> Iterator[GenerationEvent]:
        while (event := self._queue.get()) is not _END:
            yield event

    async def __aiter__(self):
        while True:
            try:
                event = self._queue.get_nowait()
            except queue.Empty:
                event = await asyncio.to_thread(self._queue.get)
            if event is _END:
                return
            yield event
