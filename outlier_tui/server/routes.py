"""The endpoints: completions (chat and text, streamed or not), models, health, telemetry."""

from __future__ import annotations

import asyncio
import hmac
import json
import time
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import TypeVar

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from engine.api import EngineClient, TelemetrySnapshot
from engine.wire import TelemetryEncoder
from outlier_tui.server import sse
from outlier_tui.server.completion import ChatFormat, Finish, Piece, TextFormat, Thinking, answer
from outlier_tui.server.errors import ApiError
from outlier_tui.server.queue import EngineQueue, Job
from outlier_tui.server.requests import CompletionRequest, chat_request, parse_json, text_request

T = TypeVar("T")
TELEMETRY_MIN_INTERVAL = 0.1  # seconds: at most 10 snapshots a second per client
TELEMETRY_HEARTBEAT = 1.0  # send an unchanged snapshot this often (memory still moves)


@dataclass(frozen=True)
class ServerConfig:
    model_name: str
    api_key: str | None = None
    max_waiting: int = 8  # requests waiting behind the running one before 429
    max_body_bytes: int = 4 * 1024 * 1024


class ClientGone(Exception):
    """The client disconnected before its answer was ready."""


class Routes:
    def __init__(self, engine: EngineClient, config: ServerConfig) -> None:
        self.engine = engine
        self.config = config
        self.queue = EngineQueue(engine, config.max_waiting)
        self.created = int(time.time())
        model = engine.snapshot().model
        self.context = model.context_length if model is not None else 0

    # ---- plain endpoints ---------------------------------------------------

    async def health(self, request: Request) -> Response:
        snapshot = self.engine.snapshot()
        return JSONResponse(
            {
                "status": "ok",
                "model": self.config.model_name,
                "engine": snapshot.state.value,
                "requests": self.queue.admitted,
            }
        )

    async def models(self, request: Request) -> Response:
        self._authorize(request)
        return JSONResponse(
            {
                "object": "list",
                "data": [
                    {"id": self.config.model_name, "object": "model", "created": self.created, "owned_by": "outlier"}
                ],
            }
        )

    # ---- completions -------------------------------------------------------

    async def chat_completions(self, request: Request) -> Response:
        return await self._complete(request, chat_request, ChatFormat)

    async def completions(self, request: Request) -> Response:
        return await self._complete(request, text_request, TextFormat)

    async def _complete(
        self, request: Request, parse: Callable[[dict], CompletionRequest], format_class: type[ChatFormat]
    ) -> Response:
        self._authorize(request)
        req = parse(parse_json(await self._body(request)))
        job = self.queue.submit(req.messages, req.params)
        fmt = format_class(self.config.model_name)
        pieces = answer(job, req.stop, self.context)
        try:
            if not req.stream:
                return JSONResponse(await _unless_gone(request, job, _whole(pieces, fmt)))
            # The first piece decides the status: a prompt too long is a 400, not a broken stream.
            first = await _unless_gone(request, job, anext(pieces))
        except ClientGone:
            return Response(status_code=204)
        except BaseException:
            job.cancel()
            raise
        return sse.EventStreamResponse(_stream(job, first, pieces, fmt, req.include_usage))

    async def _body(self, request: Request) -> bytes:
        limit = self.config.max_body_bytes
        length = request.headers.get("content-length", "")
        too_big = ApiError(
            413,
            f"The request body is larger than {limit // 1024} KiB; send a shorter conversation.",
            code="request_too_large",
        )
        if length.isdigit() and int(length) > limit:
            raise too_big
        body = bytearray()
        async for chunk in request.stream():
            body += chunk
            if len(body) > limit:
                raise too_big
        return bytes(body)

    def _authorize(self, request: Request) -> None:
        key = self.config.api_key
        if key is None:
            return
        given = request.headers.get("authorization", "")
        scheme, _, token = given.partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(token.strip().encode(), key.encode()):
            raise ApiError(
                401,
                "Incorrect or missing API key: send 'Authorization: Bearer <key>' "
                "with the key the server was started with (--api-key).",
                code="invalid_api_key",
            )

    # ---- telemetry -----------------------------------------------------------

    async def telemetry(self, request: Request) -> Response:
        """SSE of the engine's telemetry snapshots: on change, at most every 0.1 s (or ?interval=)."""
        self._authorize(request)
        try:
            interval = max(TELEMETRY_MIN_INTERVAL, float(request.query_params.get("interval", 0)))
        except ValueError:
            raise ApiError(400, "'interval' must be a number of seconds.", param="interval") from None
        return sse.EventStreamResponse(self._snapshots(interval))

    async def _snapshots(self, interval: float) -> AsyncGenerator[bytes, None]:
        last_key, last_sent = None, 0.0
        encoder = TelemetryEncoder()  # a key frame, then deltas (engine/wire.py)
        while True:
            snapshot = self.engine.snapshot()
            key = (snapshot.state, snapshot.step, snapshot.error, snapshot.cache_bytes, snapshot.bytes_read)
            now = time.monotonic()
            if key != last_key or now - last_sent >= TELEMETRY_HEARTBEAT:
                data = await asyncio.to_thread(_telemetry_json, encoder, snapshot)
                yield b"data: " + data.encode() + b"\n\n"
                last_key, last_sent = key, now
            await asyncio.sleep(interval)


def _telemetry_json(encoder: TelemetryEncoder, snapshot: TelemetrySnapshot) -> str:
    return json.dumps(encoder.encode(snapshot), separators=(",", ":"))


async def _whole(pieces: AsyncIterator[Piece], fmt: ChatFormat) -> dict:
    parts: list[str] = []
    thinking: list[str] = []
    async for piece in pieces:
        if isinstance(piece, Finish):
            return fmt.whole("".join(parts), "".join(thinking), piece)
        if isinstance(piece, Thinking):
            thinking.append(piece.text)
        else:
            parts.append(piece)
    raise ApiError(500, "The engine ended the answer without finishing it; send the request again.")


async def _stream(
    job: Job, first: Piece, pieces: AsyncGenerator[Piece, None], fmt: ChatFormat, include_usage: bool
) -> AsyncGenerator[bytes, None]:
    """The SSE body; closing it (client gone) cancels the generation."""
    try:
        if (head := fmt.first()) is not None:
            yield sse.event(head)
        piece = first
        while True:
            if isinstance(piece, Finish):
                yield sse.event(fmt.last(piece))
                if include_usage:
                    yield sse.event(fmt.usage_chunk(piece))
                break
            yield sse.event(fmt.thinking(piece.text) if isinstance(piece, Thinking) else fmt.piece(piece))
            try:
                piece = await anext(pieces)
            except ApiError as exc:  # headers are sent: report it in the stream, as OpenAI does
                yield sse.event(exc.body())
                break
        yield sse.DONE
    finally:
        job.cancel()
        await pieces.aclose()


async def _unless_gone(request: Request, job: Job, awaitable: Awaitable[T]) -> T:
    """Await `awaitable`, or cancel the job and raise ClientGone if the client disconnects first."""
    work = asyncio.ensure_future(awaitable)
    watch = asyncio.ensure_future(_disconnected(request))
    try:
        await asyncio.wait({work, watch}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        watch.cancel()
    if work.done():
        return work.result()
    work.cancel()
    job.cancel()
    raise ClientGone()


async def _disconnected(request: Request) -> None:
    while (await request.receive())["type"] != "http.disconnect":
        pass
