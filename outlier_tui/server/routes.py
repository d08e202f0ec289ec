"""The endpoints: completions (chat and text, streamed or not), models, health, telemetry."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import time
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass, replace
from typing import TypeVar

from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, Response

from engine.api import EngineClient, Message, TelemetrySnapshot
from engine.wire import TelemetryEncoder
from outlier_tui.server import sse
from outlier_tui.server.completion import ChatFormat, TextFormat, answer
from outlier_tui.server.errors import ApiError
from outlier_tui.server.keys import KeyRing
from outlier_tui.server.pieces import Finish, Piece, Thinking, ToolCall
from outlier_tui.server.queue import EngineQueue, Job
from outlier_tui.server.requests import CompletionRequest, chat_request, parse_json, text_request
from outlier_tui.server.tools import ToolCalls

T = TypeVar("T")
TELEMETRY_MIN_INTERVAL = 0.1  # seconds: at most 10 snapshots a second per client
TELEMETRY_HEARTBEAT = 1.0  # send an unchanged snapshot this often (memory still moves)
MIN_BODY_RATE = 16 * 1024  # bytes/s a body must average once the first client_timeout seconds are over


@dataclass(frozen=True)
class ServerConfig:
    model_name: str
    api_keys: tuple[str, ...] = ()  # none: open; several: each key gets its own prompt cache
    max_waiting: int = 8  # requests waiting behind the running one before 429
    max_body_bytes: int = 4 * 1024 * 1024
    prompt_chars: int | None = None  # a prompt longer than this cannot fit the context (prompt_bound)
    client_timeout: float = 10.0  # seconds a request body may stall (see _body)
    bind_host: str = "127.0.0.1"
    allowed_hosts: tuple[str, ...] = ()  # more names the Host header may carry ("*": any)
    cors_origins: tuple[str, ...] = ()  # origins whose pages may call the API (none: CORS off)


class ClientGone(Exception):
    """The client disconnected before its answer was ready."""


class Routes:
    def __init__(self, engine: EngineClient, config: ServerConfig) -> None:
        self.engine = engine
        self.config = config
        self.queue = EngineQueue(engine, config.max_waiting)
        self.keys = KeyRing(list(config.api_keys)) if config.api_keys else None
        self.created = int(time.time())
        model = engine.snapshot().model
        self.context = model.context_length if model is not None else 0
        self.tool_calls = ToolCalls(model)  # outlier_tui.server.tools

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
        namespace = self._authorize(request)
        req = parse(parse_json(await self._body(request)))
        self.tool_calls.check(req.params.tools)
        self.check_size(req.messages)
        job = self.queue.submit(req.messages, replace(req.params, cache_scope=namespace or ""))
        fmt = format_class(self.config.model_name)
        pieces = self.tool_calls.pieces(answer(job, req.stop, self.context), req.params.tools)
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
        """The body, at most max_body_bytes (413), arriving in time (408): after a grace of
        client_timeout seconds it must average MIN_BODY_RATE, so a client trickling bytes
        cannot hold a connection and a request slot for long."""
        limit = self.config.max_body_bytes
        length = request.headers.get("content-length", "")
        too_big = ApiError(
            413,
            f"The request body is larger than {limit // 1024} KiB; send a shorter conversation.",
            code="request_too_large",
        )
        if length.isdigit() and int(length) > limit:
            raise too_big
        loop = asyncio.get_running_loop()
        start = loop.time()
        body = bytearray()
        chunks = request.stream()
        while True:
            allowed = start + self.config.client_timeout + len(body) / MIN_BODY_RATE - loop.time()
            try:
                chunk = await asyncio.wait_for(anext(chunks, None), max(allowed, 0.0))
            except ClientDisconnect:  # nobody will read the answer; not a server error either
                raise ApiError(400, "The client disconnected while sending the request.") from None
            except TimeoutError:
                raise ApiError(
                    408,
                    f"The request body came too slowly ({len(body)} bytes in {loop.time() - start:.0f} s).",
                    code="request_timeout",
                ) from None
            if chunk is None:
                return bytes(body)
            body += chunk
            if len(body) > limit:
                raise too_big

    def check_size(self, messages: Sequence[Message]) -> None:
        """Refuse, before any tokenizing, a prompt that cannot fit the context (prompt_bound)."""
        if self.context and len(messages) > self.context:
            raise ApiError(
                400,
                f"{len(messages)} messages cannot fit the model's context of {self.context} tokens.",
                code="context_length_exceeded",
                param="messages",
            )
        limit = self.config.prompt_chars
        if limit is None:
            return
        chars = sum(len(m["content"]) + len(m.get("reasoning_content", "")) for m in messages)
        if chars > limit:
            raise ApiError(
                400,
                f"The prompt is {chars} characters; the model's context holds {self.context} tokens, "
                f"which is at most {limit} characters with this tokenizer: shorten it or start a new chat.",
                code="context_length_exceeded",
            )

    def _authorize(self, request: Request) -> str | None:
        """Check the bearer key; returns its prompt-cache namespace (None: shared)."""
        return self.authorize(request.headers.get("authorization", ""), "'Authorization: Bearer <key>'")

    def authorize(self, authorization: str, how: str) -> str | None:
        """The prompt-cache namespace of the key in an `Authorization` value (None: shared), or 401
        saying `how` to send one."""
        if self.keys is None:
            return None
        index = self.keys.identify(authorization)
        if index is None:
            raise ApiError(
                401,
                f"Incorrect or missing API key: send {how} "
                "with a key the server was started with (--api-key-file or $OUTLIER_API_KEY).",
                code="invalid_api_key",
            )
        return self.keys.namespace(index)

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
                data = await asyncio.to_thread(_telemetry_json, encoder, snapshot, self.config.model_name)
                yield b"data: " + data.encode() + b"\n\n"
                last_key, last_sent = key, now
            await asyncio.sleep(interval)


def _telemetry_json(encoder: TelemetryEncoder, snapshot: TelemetrySnapshot, model_name: str) -> str:
    """The snapshot, compactly encoded, naming the model as the API does: its folder's path stays private."""
    if snapshot.model is not None:
        snapshot = dataclasses.replace(snapshot, model=dataclasses.replace(snapshot.model, path=model_name))
    return json.dumps(encoder.encode(snapshot), separators=(",", ":"))


async def _whole(pieces: AsyncIterator[Piece | ToolCall], fmt: ChatFormat) -> dict:
    parts: list[str] = []
    thinking: list[str] = []
    calls: list[ToolCall] = []
    async for piece in pieces:
        if isinstance(piece, Finish):
            return fmt.whole("".join(parts), "".join(thinking), piece, calls)
        if isinstance(piece, Thinking):
            thinking.append(piece.text)
        elif isinstance(piece, ToolCall):
            calls.append(piece)
        else:
            parts.append(piece)
    raise ApiError(500, "The engine ended the answer without finishing it; send the request again.")


async def _stream(
    job: Job,
    first: Piece | ToolCall,
    pieces: AsyncGenerator[Piece | ToolCall, None],
    fmt: ChatFormat,
    include_usage: bool,
) -> AsyncGenerator[bytes, None]:
    """The SSE body; closing it (client gone) cancels the generation."""
    calls = 0
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
            if isinstance(piece, ToolCall):
                yield sse.event(fmt.tool_call(piece, calls))
                calls += 1
            else:
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
