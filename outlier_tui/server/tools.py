"""Tool calls on both APIs: the request's tools checked, the model's calls cut out of its text.

Tools reach the model through its chat template (GenerationParams.tools,
assistant `tool_calls`, `tool` messages); the model's answer is read with the
mlx-lm parser its tokenizer names (ModelInfo.tool_parser, engine.tool_parsers).
ToolCallSplitter sits on the answer text as it streams: text outside the
markers passes on, a call is held until its end marker and leaves as one
ToolCall, so tool-call markup never reaches a client's text.
"""

from __future__ import annotations

import json
import logging
import uuid
from collections.abc import AsyncGenerator, AsyncIterator
from typing import Any

from engine.api import ModelInfo
from engine.tool_parsers import ToolParser, load_parser
from outlier_tui.server.errors import ApiError
from outlier_tui.server.pieces import Finish, Piece, ToolCall

log = logging.getLogger("outlier.serve")

MAX_TOOLS = 512  # a generous bound: agents send tens


# ---- requests ------------------------------------------------------------------


def openai_tools(data: dict[str, Any]) -> tuple[dict, ...]:
    """The request's `tools` (OpenAI form), honouring `tool_choice`; () when there are none."""
    tools = data.get("tools")
    choice = data.get("tool_choice")
    if tools is None or tools == []:
        if choice not in (None, "none", "auto"):
            raise _bad("tool_choice", "'tool_choice' names a tool, but the request has no 'tools'.")
        return ()
    if not isinstance(tools, list) or len(tools) > MAX_TOOLS:
        raise _bad("tools", f"'tools' must be a list of at most {MAX_TOOLS} tools.")
    checked = tuple(_openai_tool(i, t) for i, t in enumerate(tools))
    if choice == "none":
        return ()
    if choice not in (None, "auto"):
        raise _bad(
            "tool_choice",
            "'tool_choice' may be 'auto' or 'none': this server cannot force the model to call a tool.",
        )
    return checked


def _openai_tool(index: int, tool: Any) -> dict:
    where = f"tools[{index}]"
    if not isinstance(tool, dict) or tool.get("type", "function") != "function":
        raise _bad(where, f"{where} must be {{'type': 'function', 'function': {{...}}}}.")
    function = tool.get("function")
    if not isinstance(function, dict):
        raise _bad(f"{where}.function", f"{where}.function must be an object with a 'name'.")
    return {"type": "function", "function": function_spec(f"{where}.function", function, "parameters")}


def function_spec(where: str, spec: dict, schema_key: str) -> dict:
    """{name, description, parameters} for the chat template, from OpenAI's or Anthropic's form."""
    name = spec.get("name")
    if not isinstance(name, str) or not name or len(name) > 128:
        raise _bad(f"{where}.name", f"{where}.name must be a non-empty string of at most 128 characters.")
    description = spec.get("description")
    if description is not None and not isinstance(description, str):
        raise _bad(f"{where}.description", f"{where}.description must be a string.")
    schema = spec.get(schema_key)
    if schema is not None and not isinstance(schema, dict):
        raise _bad(f"{where}.{schema_key}", f"{where}.{schema_key} must be a JSON schema object.")
    out: dict[str, Any] = {"name": name}
    if description:
        out["description"] = description
    out["parameters"] = schema if schema is not None else {"type": "object", "properties": {}}
    return out


def assistant_tool_calls(where: str, calls: Any) -> list[dict]:
    """An assistant message's OpenAI `tool_calls`, with arguments as objects (chat templates
    render them with `tojson`, as mlx-lm's server passes them)."""
    if not isinstance(calls, list):
        raise _bad(f"{where}.tool_calls", f"{where}.tool_calls must be a list.")
    out = []
    for i, call in enumerate(calls):
        at = f"{where}.tool_calls[{i}]"
        function = call.get("function") if isinstance(call, dict) else None
        if not isinstance(function, dict) or not isinstance(function.get("name"), str):
            raise _bad(at, f"{at} must be {{'id', 'type': 'function', 'function': {{'name', 'arguments'}}}}.")
        arguments = function.get("arguments") or {}
        if isinstance(arguments, str):
            try:
                arguments = json.loads(arguments)
            except json.JSONDecodeError:
                raise _bad(f"{at}.function.arguments", f"{at}.function.arguments is not valid JSON.") from None
        out.append(template_call(str(call.get("id") or ""), function["name"], arguments))
    return out


def template_call(call_id: str, name: str, arguments: Any) -> dict:
    """One earlier call as chat templates take it."""
    return {"id": call_id, "type": "function", "function": {"name": name, "arguments": arguments}}


def _bad(param: str, message: str) -> ApiError:
    return ApiError(400, message, param=param, code="invalid_value")


# ---- the model's answer -------------------------------------------------------------


class ToolCalls:
    """Tool calling for the served model: whether it can, and the splitter for an answer."""

    def __init__(self, model: ModelInfo | None) -> None:
        self.parser_name = model.tool_parser if model is not None else None
        self._parser: ToolParser | None = None

    def check(self, tools: tuple[dict, ...]) -> None:
        """Refuse tools a model cannot call (its chat template has no tool calling)."""
        if tools and self.parser() is None:
            raise ApiError(
                400,
                "This model cannot call tools: its chat template has no tool-call format that "
                "mlx-lm knows. Send the request without 'tools'.",
                param="tools",
                code="tools_not_supported",
            )

    def parser(self) -> ToolParser | None:
        if self._parser is None and self.parser_name:
            try:
                self._parser = load_parser(self.parser_name)
            except ValueError:
                log.warning("mlx-lm has no tool parser %r: tool calls are off", self.parser_name)
                self.parser_name = None
        return self._parser

    def pieces(self, pieces: AsyncIterator[Piece], tools: tuple[dict, ...]) -> AsyncGenerator[Piece | ToolCall, None]:
        """The answer's pieces with tool calls cut out of its text (unchanged without tools)."""
        parser = self.parser()
        return _split(pieces, ToolCallSplitter(parser, list(tools)) if tools and parser else None)


async def _split(
    pieces: AsyncIterator[Piece], splitter: ToolCallSplitter | None
) -> AsyncGenerator[Piece | ToolCall, None]:
    try:
        async for piece in pieces:
            if splitter is None:
                yield piece
            elif isinstance(piece, str):
                for out in splitter.feed(piece):
                    yield out
            elif isinstance(piece, Finish):
                for out in splitter.finish():
                    yield out
                called = splitter.calls and piece.reason == "stop"
                yield Finish("tool_calls", piece.stats, piece.stop_sequence) if called else piece
            else:
                yield piece
    finally:
        if hasattr(pieces, "aclose"):
            await pieces.aclose()


class ToolCallSplitter:
    """Fed answer text in order, returns text (str) and ToolCall pieces in order."""

    def __init__(self, parser: ToolParser, tools: list[dict]) -> None:
        self.parser = parser
        self.tools = tools
        self.calls = 0
        self._buffer = ""
        self._in_call = False
        self._space = ""  # whitespace after a call, sent only if text follows it

    def feed(self, text: str) -> list[str | ToolCall]:
        self._buffer += text
        out: list[str | ToolCall] = []
        start, end = self.parser.start, self.parser.end
        while self._buffer:
            if self._in_call:
                at = self._buffer.find(end) if end else -1
                if at < 0:
                    break
                self._emit_call(self._buffer[:at], out)
                self._buffer = self._buffer[at + len(end) :]
                self._in_call = False
                continue
            at = self._buffer.find(start)
            if at >= 0:
                self._text(self._buffer[:at], out)
                self._buffer = self._buffer[at + len(start) :]
                self._in_call = True
                continue
            ready = len(self._buffer) - _partial(self._buffer, start)
            self._text(self._buffer[:ready], out)
            self._buffer = self._buffer[ready:]
            break
        return out

    def finish(self) -> list[str | ToolCall]:
        out: list[str | ToolCall] = []
        if self._in_call:
            self._emit_call(self._buffer, out)  # mistral's calls have no end marker; others were cut short
        else:
            self._text(self._buffer, out)
        self._buffer, self._in_call = "", False
        return out

    def _text(self, text: str, out: list[str | ToolCall]) -> None:
        if not text:
            return
        if self.calls and not text.strip():
            self._space += text
            return
        text, self._space = self._space + text, ""
        if out and isinstance(out[-1], str):
            out[-1] += text
        else:
            out.append(text)

    def _emit_call(self, text: str, out: list[str | ToolCall]) -> None:
        try:
            parsed = self.parser.parse(text, self.tools)
        except Exception as exc:  # a call cut short by max_tokens, or not the parser's format
            log.warning("dropped a tool call the %s parser cannot read (%s): %.200r", self.parser.name, exc, text)
            return
        for call in parsed if isinstance(parsed, list) else [parsed]:
            if not isinstance(call, dict) or not isinstance(call.get("name"), str):
                log.warning("dropped a tool call without a name: %.200r", call)
                continue
            arguments = call.get("arguments", {})
            if not isinstance(arguments, str):
                arguments = json.dumps(arguments, ensure_ascii=False)
            self.calls += 1
            self._space = ""
            out.append(ToolCall(str(call.get("id") or f"call_{uuid.uuid4().hex[:24]}"), call["name"], arguments))


def _partial(text: str, marker: str) -> int:
    """Length of the longest tail of `text` that is a proper prefix of `marker`."""
    for size in range(min(len(marker) - 1, len(text)), 0, -1):
        if marker.startswith(text[-size:]):
            return size
    return 0
