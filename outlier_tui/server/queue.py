"""Requests take turns on the one engine, first come first served.

The engine runs one generation at a time on its MLX thread; queueing here
(not on that thread) lets a request leave the line when its client goes away,
refuses new ones when the line is full, and cancels exactly the running
request. A request holds its turn until the engine's stream has ended, so the
next one starts on an engine that is really free. Events reach the event loop
straight from the engine's thread (EventStream.listen): no thread in between.

Whose prompt caches a job may reuse travels in its params (cache_scope: the
server's key identity, keys.KeyRing.namespace): the engine keeps each scope's
prefixes apart, so one client never reuses, or learns the length of, another's.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Sequence

from engine.api import (
    EngineClient,
    GenerationDone,
    GenerationEvent,
    GenerationFailed,
    GenerationParams,
    Message,
)
from outlier_tui.server.errors import ApiError


class Job:
    """One admitted request: its events arrive on the event loop, in order."""

    def __init__(self, queue: EngineQueue, messages: Sequence[Message], params: GenerationParams) -> None:
        self._queue = queue
        self.messages = [m.copy() for m in messages]
        self.params = params
        self.events: asyncio.Queue[GenerationEvent] = asyncio.Queue()
        self.running = False  # the engine has it
        self.finished = False  # the engine's stream ended (or it never started)
        self.task: asyncio.Task | None = None

    def cancel(self) -> None:
        """Leave the line, or stop the generation between tokens; a no-op once finished."""
        if self.finished:
            return
        if self.running:
            self._queue.engine.cancel()
        elif self.task is not None:
            self.task.cancel()

    async def __aiter__(self) -> AsyncIterator[GenerationEvent]:
        while True:
            event = await self.events.get()
            yield event
            if isinstance(event, (GenerationDone, GenerationFailed)):
                return


class EngineQueue:
    """Admits at most 1 running + `max_waiting` waiting requests; asyncio.Lock keeps FIFO order."""

    def __init__(self, engine: EngineClient, max_waiting: int) -> None:
        self.engine = engine
        self.max_waiting = max_waiting
        self._turn = asyncio.Lock()
        self._admitted = 0

    @property
    def admitted(self) -> int:
        """Requests running or waiting."""
        return self._admitted

    def submit(self, messages: Sequence[Message], params: GenerationParams) -> Job:
        """Queue a generation; raises ApiError(429) when the line is full."""
        if self._admitted >= 1 + self.max_waiting:
            raise ApiError(
                429,
                f"The server is busy: {self._admitted} requests are running or waiting "
                "for the one model. Retry shortly.",
                code="queue_full",
            )
        self._admitted += 1
        job = Job(self, messages, params)
        job.task = asyncio.get_running_loop().create_task(self._run(job))
        job.task.add_done_callback(lambda _task: self._release(job))  # runs even if never started
        return job

    def _release(self, job: Job) -> None:
        job.finished = True
        self._admitted -= 1

    async def _run(self, job: Job) -> None:
        async with self._turn:
            job.running = True
            done = self._start(job)
            try:
                await asyncio.shield(done)  # our turn lasts until the engine is free again
            except asyncio.CancelledError:  # server shutdown: stop the engine, then let go
                self.engine.cancel()
                await done
                raise

    def _start(self, job: Job) -> asyncio.Future:
        """Start the generation; its events go to job.events; the future resolves when it ends."""
        stream = self.engine.generate(job.messages, job.params)
        loop = asyncio.get_running_loop()
        done = loop.create_future()

        def deliver(event: GenerationEvent) -> None:  # on the engine's thread
            def on_loop() -> None:
                job.events.put_nowait(event)
                if isinstance(event, (GenerationDone, GenerationFailed)) and not done.done():
                    done.set_result(None)

            # RuntimeError: the event loop closed under us (server exit): nobody listens
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(on_loop)

        stream.listen(deliver)
        return done
