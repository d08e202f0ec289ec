"""The per-request event channel between the engine thread and a UI."""

from __future__ import annotations

import asyncio
import queue
from typing import Iterator

from engine.api import GenerationDone, GenerationEvent, GenerationFailed

_END = object()


class EventStream:
    """Events of one request, consumable from a thread (`for`) or asyncio (`async for`)."""

    def __init__(self) -> None:
        self._queue: queue.SimpleQueue = queue.SimpleQueue()

    def put(self, event: GenerationEvent) -> None:
        self._queue.put(event)
        if isinstance(event, (GenerationDone, GenerationFailed)):
            self._queue.put(_END)

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
