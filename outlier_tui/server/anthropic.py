"""Anthropic's Messages API (POST /v1/messages, /v1/messages/count_tokens) on the same request path.

Claude Code and other agents speak this API. A request here becomes the same
engine messages and GenerationParams as an OpenAI one, waits in the same
EngineQueue, is cancelled the same way when its client leaves and is bounded
by the same body limit; only the shapes differ: content blocks in and out
(text, thinking, tool_use, tool_result), the streamed event sequence
(message_start, content_block_start/delta/stop, message_delta, message_stop,
ping) and errors as {"type": "error", "error": {"type", "message"}}.
"""

from __future__ import annotations

import asyncio
import json
import logging
import uuid
from collections.abc import AsyncGenerator, AsyncIterator
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from engine.api import GenerationParams, Message
from outlier_tui.server import sse
from outlier_tui.server.completion import answer
from outlier_tui.server.errors import ApiError
from outlier_tui.server.pieces import Finish, Piece, Thinking, ToolCall
from outlier_tui.server.requests import DEFAULT_MAX_TOKENS, parse_json
from outlier_tui.server.stops import MAX_STOP_CHARS, MAX_STOPS
from outlier_tui.server.tools import MAX_TOOLS, function_spec, template_call

if TYPE_CHECKING:
    from outlier_tui.server.queue import Job
    from outlier_tui.server.routes import Routes

log = logging.getLogger("outlier.serve")

PREFIX = "/v1/messages"

# Anthropic's error types by status (https://docs.anthropic.com/en/api/errors).
_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    405: "invalid_request_error",
    413: "request_too_large",
    429: "rate_limit_error",
    500: "api_error",
    529: "overloaded_error",
}
_STOP_REASONS = {"length": "max_tokens", "tool_calls": "tool_use"}


def error_body(exc: ApiError) -> dict:
    status = _status(exc.status)
    return {"type": "error", "error": {"type": _TYPES.get(status, "api_error"), "message": exc.message}}


def error_response(exc: ApiError) -> JSONResponse:
    """The ApiError in Anthropic's shape; a busy engine (503) is Anthropic's 529 overloaded."""
    status = _status(exc.status)
    headers = {"retry-after": "1"} if status in (429, 529) else None
    return JSONResponse(error_body(exc), status_code=status, headers=headers)


def _status(status: int) -> int:
    return 529 if status == 503 else status


@dataclass(frozen=True)
class MessagesRequest:
    messages: list[Message]
    params: GenerationParams
    stream: bool
    stop: tuple[str, ...]


class AnthropicRoutes:
    """The two endpoints, sharing Routes' queue, body limit, tool calls and context."""

    def __init__(self, routes: Routes) -> None:
        self.routes = routes

    async def messages(self, request: Request) -> Response:
        try:
            return await self._messages(request)
        except ApiError as exc:
            return error_response(exc)
        except Exception as exc:  # never a traceback to the client; the log has it
            log.exception("internal error on %s", request.url.path)
            return error_response(ApiError(500, f"Internal server error ({type(exc).__name__}); see the server's log."))

    async def count_tokens(self, request: Request) -> Response:
        try:
            self._authorize(request)
            req = messages_request(parse_json(await self.routes._body(request)), count_only=True)
            self.routes.tool_calls.check(req.params.tools)
            count = getattr(self.routes.engine, "count_tokens", None)
            if count is None:
                raise ApiError(404, "This server's engine cannot count tokens.")
            try:
                tokens = await asyncio.to_thread(count, req.messages, req.params)
            except Exception as exc:  # the tokenizer or template refused the conversation
                raise ApiError(400, f"Cannot count this conversation's tokens: {exc}") from None
            return JSONResponse({"input_tokens": tokens})
        except ApiError as exc:
            return error_response(exc)

    async def _messages(self, request: Request) -> Response:
        from outlier_tui.server.routes import ClientGone, _unless_gone

        namespace = self._authorize(request)
        req = messages_request(parse_json(await self.routes._body(request)))
        routes = self.routes
        routes.tool_calls.check(req.params.tools)
        routes.check_size(req.messages)
        job = routes.queue.submit(req.messages, replace(req.params, cache_scope=namespace or ""))
        fmt = MessageFormat(routes.config.model_name)
        pieces = routes.tool_calls.pieces(answer(job, req.stop, routes.context), req.params.tools)
        try:
            if not req.stream:
                return JSONResponse(await _unless_gone(request, job, _whole(pieces, fmt)))
            first = await _unless_gone(request, job, anext(pieces))  # a prompt too long is a 400, not a stream
        except ClientGone:
            return Response(status_code=204)
        except BaseException:
            job.cancel()
            raise
        return sse.EventStreamResponse(_stream(job, first, pieces, fmt))

    def _authorize(self, request: Request) -> str | None:
        """`x-api-key: KEY` (Anthropic's clients) or `Authorization: Bearer KEY`; returns the key's
        prompt-cache namespace (None: shared)."""
        given = request.headers.get("x-api-key")
        authorization = f"Bearer {given}" if given is not None else request.headers.get("authorization", "")
        return self.routes.authorize(authorization, "'x-api-key: <key>'")


# ---- requests ------------------------------------------------------------------


def messages_request(data: dict[str, Any], count_only: bool = False) -> MessagesRequest:
    """A Messages API body checked field by field; every mistake is a 400 naming the field."""
    model = data.get("model")
    if model is not None and not isinstance(model, str):
        raise _bad("'model' must be a string.")
    max_tokens = data.get("max_tokens")
    if max_tokens is None and not count_only:
        raise _bad("'max_tokens' is required: the longest answer in tokens.")
    if max_tokens is None:
        max_tokens = DEFAULT_MAX_TOKENS
    if not _is_int(max_tokens) or max_tokens < 1:
        raise _bad("'max_tokens' must be a whole number of at least 1.")
    messages = data.get("messages")
    if not isinstance(messages, list) or not messages:
        raise _bad("'messages' must be a non-empty list of {role, content} objects.")
    turns = _system(data.get("system"))
    for i, message in enumerate(messages):
        turns += _turn(i, message)
    if messages[-1].get("role") == "assistant" and not count_only:
        raise _bad("The last message must be the user's: continuing a prefilled assistant answer is not supported.")
    if data.get("top_k") is not None:
        raise _bad("'top_k' is not supported: use 'temperature' or 'top_p'.")
    stream = data.get("stream", False)
    if not isinstance(stream, bool):
        raise _bad("'stream' must be true or false.")
    top_p = _number(data, "top_p", 1.0, 0.0, 1.0)
    if top_p == 0.0:
        raise _bad("'top_p' must be more than 0.")
    params = GenerationParams(
        max_tokens=int(max_tokens),
        temperature=_number(data, "temperature", 1.0, 0.0, 1.0),
        top_p=top_p,
        chat_template=True,
        enable_thinking=_thinking(data.get("thinking")),
        tools=_tools(data.get("tools"), data.get("tool_choice")),
    )
    return MessagesRequest(turns, params, stream, _stops(data.get("stop_sequences")))


def _system(system: Any) -> list[Message]:
    if system is None:
        return []
    text = system if isinstance(system, str) else _texts("system", system)
    return [{"role": "system", "content": text}] if text else []


def _turn(index: int, message: Any) -> list[Message]:
    where = f"messages[{index}]"
    if not isinstance(message, dict) or message.get("role") not in ("user", "assistant"):
        raise _bad(f"{where} must be an object with 'role' (user or assistant) and 'content'.")
    role, content = message["role"], message.get("content")
    if isinstance(content, str):
        return [{"role": role, "content": content}]
    if not isinstance(content, list):
        raise _bad(f"{where}.content must be a string or a list of content blocks.")
    return _assistant(where, content) if role == "assistant" else _user(where, content)


def _user(where: str, blocks: list) -> list[Message]:
    """Text blocks become user messages, tool_result blocks `tool` messages, in order."""
    out: list[Message] = []
    text: list[str] = []
    for i, block in enumerate(blocks):
        kind = _block_type(f"{where}.content[{i}]", block)
        if kind == "text":
            text.append(_text(f"{where}.content[{i}]", block))
        elif kind == "tool_result":
            if text:
                out.append({"role": "user", "content": "".join(text)})
                text = []
            call_id = block.get("tool_use_id")
            if not isinstance(call_id, str):
                raise _bad(f"{where}.content[{i}].tool_use_id must be a string.")
            result = block.get("content", "")
            result = result if isinstance(result, str) else _texts(f"{where}.content[{i}].content", result)
            if block.get("is_error"):
                result = f"Error: {result}"
            out.append({"role": "tool", "content": result, "tool_call_id": call_id})
        else:
            raise _unsupported(f"{where}.content[{i}]", kind)
    if text or not out:
        out.append({"role": "user", "content": "".join(text)})
    return out


def _assistant(where: str, blocks: list) -> list[Message]:
    """One assistant message: its text, its thinking (reasoning_content) and its tool_use calls."""
    text: list[str] = []
    thinking: list[str] = []
    calls: list[dict] = []
    for i, block in enumerate(blocks):
        at = f"{where}.content[{i}]"
        kind = _block_type(at, block)
        if kind == "text":
            text.append(_text(at, block))
        elif kind == "thinking":
            if isinstance(block.get("thinking"), str):
                thinking.append(block["thinking"])
        elif kind == "redacted_thinking":
            continue  # encrypted by Anthropic's servers: nothing a local model can read
        elif kind == "tool_use":
            name, call_input = block.get("name"), block.get("input", {})
            if not isinstance(name, str) or not isinstance(call_input, dict):
                raise _bad(f"{at} must be a tool_use block with 'id', 'name' and an 'input' object.")
            calls.append(template_call(str(block.get("id") or ""), name, call_input))
        else:
            raise _unsupported(at, kind)
    out: Message = {"role": "assistant", "content": "".join(text)}
    if thinking:
        out["reasoning_content"] = "".join(thinking)
    if calls:
        out["tool_calls"] = calls
    return [out]


def _block_type(where: str, block: Any) -> str:
    if not isinstance(block, dict) or not isinstance(block.get("type"), str):
        raise _bad(f"{where} must be a content block object with a 'type'.")
    return block["type"]


def _text(where: str, block: dict) -> str:
    if not isinstance(block.get("text"), str):
        raise _bad(f"{where}.text must be a string.")
    return block["text"]


def _texts(where: str, blocks: Any) -> str:
    if not isinstance(blocks, list):
        raise _bad(f"{where} must be a string or a list of text blocks.")
    out = []
    for i, block in enumerate(blocks):
        kind = _block_type(f"{where}[{i}]", block)
        if kind != "text":
            raise _unsupported(f"{where}[{i}]", kind)
        out.append(_text(f"{where}[{i}]", block))
    return "".join(out)


def _unsupported(where: str, kind: str) -> ApiError:
    return _bad(f"{where}: '{kind}' blocks are not supported (text, thinking, tool_use and tool_result are).")


def _tools(tools: Any, choice: Any) -> tuple[dict, ...]:
    """Anthropic's tools ({name, description, input_schema}) in the OpenAI form chat templates take."""
    kind = choice.get("type") if isinstance(choice, dict) else choice
    if choice is not None and kind not in ("auto", "none", "any", "tool"):
        raise _bad("'tool_choice' must be {'type': 'auto'} or {'type': 'none'}.")
    if kind in ("any", "tool"):
        raise _bad(f"'tool_choice' {kind!r} is not supported: this server cannot force a tool call; use 'auto'.")
    if tools is None or tools == [] or kind == "none":
        return ()
    if not isinstance(tools, list) or len(tools) > MAX_TOOLS:
        raise _bad(f"'tools' must be a list of at most {MAX_TOOLS} tools.")
    out = []
    for i, tool in enumerate(tools):
        if not isinstance(tool, dict):
            raise _bad(f"tools[{i}] must be an object with 'name' and 'input_schema'.")
        if tool.get("type") not in (None, "custom"):
            raise _bad(f"tools[{i}]: server tools ({tool.get('type')}) are not supported; send custom tools.")
        out.append({"type": "function", "function": function_spec(f"tools[{i}]", tool, "input_schema")})
    return tuple(out)


def _thinking(thinking: Any) -> bool | None:
    """{"type": "enabled"} turns a template's thinking switch on, "disabled" off."""
    if thinking is None:
        return None
    kind = thinking.get("type") if isinstance(thinking, dict) else None
    if kind not in ("enabled", "disabled", "adaptive"):
        raise _bad("'thinking' must be {'type': 'enabled', 'budget_tokens': N} or {'type': 'disabled'}.")
    return {"enabled": True, "disabled": False}.get(kind)


def _stops(stops: Any) -> tuple[str, ...]:
    if stops is None:
        return ()
    if not isinstance(stops, list) or not all(isinstance(s, str) and s for s in stops):
        raise _bad("'stop_sequences' must be a list of non-empty strings.")
    if len(stops) > MAX_STOPS:
        raise _bad(f"'stop_sequences' takes at most {MAX_STOPS} sequences (got {len(stops)}).")
    if (longest := max(len(s) for s in stops)) > MAX_STOP_CHARS:
        raise _bad(f"A stop sequence may be at most {MAX_STOP_CHARS} characters long (got {longest}).")
    return tuple(stops)


def _number(data: dict[str, Any], name: str, default: float, low: float, high: float) -> float:
    value = data.get(name)
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not low <= value <= high:
        raise _bad(f"'{name}' must be a number from {low:g} to {high:g}.")
    return float(value)


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _bad(message: str) -> ApiError:
    return ApiError(400, message)


# ---- responses -------------------------------------------------------------------


class MessageFormat:
    """Shapes of /v1/messages answers and stream events."""

    def __init__(self, model: str) -> None:
        self.id = f"msg_{uuid.uuid4().hex}"
        self.model = model

    def message(self, content: list[dict], finish: Finish | None) -> dict:
        return {
            "id": self.id,
            "type": "message",
            "role": "assistant",
            "model": self.model,
            "content": content,
            "stop_reason": self.stop_reason(finish) if finish else None,
            "stop_sequence": finish.stop_sequence if finish else None,
            "usage": usage(finish) if finish else {"input_tokens": 0, "output_tokens": 0},
        }

    @staticmethod
    def stop_reason(finish: Finish) -> str:
        if finish.stop_sequence is not None and finish.reason == "stop":
            return "stop_sequence"
        return _STOP_REASONS.get(finish.reason, "end_turn")


def usage(finish: Finish) -> dict:
    """Anthropic counts prompt tokens read from the KV cache apart from the ones prefilled."""
    stats = finish.stats
    return {
        "input_tokens": stats.prompt_tokens,
        "output_tokens": stats.generation_tokens,
        "cache_read_input_tokens": stats.cached_tokens,
        "cache_creation_input_tokens": 0,
    }


def tool_use(call: ToolCall) -> dict:
    return {"type": "tool_use", "id": _tool_use_id(call.id), "name": call.name, "input": call.input}


def _tool_use_id(call_id: str) -> str:
    return "toolu_" + call_id.removeprefix("call_") if not call_id.startswith("toolu_") else call_id


async def _whole(pieces: AsyncIterator[Piece | ToolCall], fmt: MessageFormat) -> dict:
    thinking: list[str] = []
    text: list[str] = []
    calls: list[dict] = []
    async for piece in pieces:
        if isinstance(piece, Finish):
            content: list[dict] = []
            if thinking:
                content.append({"type": "thinking", "thinking": "".join(thinking), "signature": ""})
            if text:
                content.append({"type": "text", "text": "".join(text)})
            return fmt.message(content + calls, piece)
        if isinstance(piece, Thinking):
            thinking.append(piece.text)
        elif isinstance(piece, ToolCall):
            calls.append(tool_use(piece))
        else:
            text.append(piece)
    raise ApiError(500, "The engine ended the answer without finishing it; send the request again.")


def event(kind: str, data: dict) -> bytes:
    return f"event: {kind}\ndata: ".encode() + json.dumps({"type": kind, **data}, ensure_ascii=False).encode() + b"\n\n"


async def _stream(
    job: Job, first: Piece | ToolCall, pieces: AsyncGenerator[Piece | ToolCall, None], fmt: MessageFormat
) -> AsyncGenerator[bytes, None]:
    """The event sequence; closing it (client gone) cancels the generation."""
    index, open_kind = -1, None  # the content block being streamed

    def close() -> bytes:
        nonlocal open_kind
        open_kind = None
        return event("content_block_stop", {"index": index})

    def start(block: dict) -> bytes:
        nonlocal index, open_kind
        index, open_kind = index + 1, block["type"]
        return event("content_block_start", {"index": index, "content_block": block})

    try:
        yield event("message_start", {"message": fmt.message([], None)})
        yield event("ping", {})
        piece = first
        while True:
            if isinstance(piece, Finish):
                if open_kind:
                    yield close()
                delta = {"stop_reason": fmt.stop_reason(piece), "stop_sequence": piece.stop_sequence}
                yield event("message_delta", {"delta": delta, "usage": usage(piece)})
                yield event("message_stop", {})
                break
            if isinstance(piece, ToolCall):
                if open_kind:
                    yield close()
                yield start({**tool_use(piece), "input": {}})
                delta = {"type": "input_json_delta", "partial_json": piece.arguments}
                yield event("content_block_delta", {"index": index, "delta": delta})
                yield close()
            else:
                kind = "thinking" if isinstance(piece, Thinking) else "text"
                if open_kind != kind:
                    if open_kind:
                        yield close()
                    yield start(
                        {"type": "thinking", "thinking": "", "signature": ""}
                        if kind == "thinking"
                        else {"type": "text", "text": ""}
                    )
                delta = (
                    {"type": "thinking_delta", "thinking": piece.text}
                    if isinstance(piece, Thinking)
                    else {"type": "text_delta", "text": piece}
                )
                yield event("content_block_delta", {"index": index, "delta": delta})
            try:
                piece = await anext(pieces)
            except ApiError as exc:  # headers are sent: an error event, as Anthropic's API does
                yield event("error", {"error": error_body(exc)["error"]})
                break
    finally:
        job.cancel()
        await pieces.aclose()
