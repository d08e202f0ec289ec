"""Request bodies of /v1/chat/completions and /v1/completions, checked field by field.

Every mistake becomes ApiError(400) naming the field, so clients see what to
fix instead of a traceback; fields the engine cannot honour (n > 1, images)
are refused rather than silently ignored.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

from engine.api import GenerationParams, Message
from outlier_tui.server.errors import ApiError
from outlier_tui.server.fields import refuse_unsupported, refuse_unsupported_message_keys
from outlier_tui.server.stops import MAX_STOP_CHARS, MAX_STOPS
from outlier_tui.server.tools import assistant_tool_calls, openai_tools
from outlier_tui.server.wellformed import parse_json

__all__ = ["CompletionRequest", "chat_request", "parse_json", "text_request"]

DEFAULT_MAX_TOKENS = 2048  # when the request names none
_ROLES = {"system": "system", "developer": "system", "user": "user", "assistant": "assistant", "tool": "tool"}


@dataclass(frozen=True)
class CompletionRequest:
    """What both endpoints need, once validated."""

    messages: list[Message]
    params: GenerationParams
    stream: bool
    include_usage: bool
    stop: tuple[str, ...]
    model: str | None


def chat_request(data: dict[str, Any]) -> CompletionRequest:
    refuse_unsupported(data, "chat")
    messages = data.get("messages")
    if not isinstance(messages, list) or not messages:
        raise _bad("messages", "'messages' must be a non-empty list of {role, content} objects.")
    request = _common(data, [_message(i, m) for i, m in enumerate(messages)], chat_template=True)
    tools = openai_tools(data)  # outlier_tui.server.tools
    return replace(request, params=replace(request.params, tools=tools)) if tools else request


def text_request(data: dict[str, Any]) -> CompletionRequest:
    refuse_unsupported(data, "text")
    prompt = data.get("prompt")
    if isinstance(prompt, list) and len(prompt) == 1 and isinstance(prompt[0], str):
        prompt = prompt[0]
    if not isinstance(prompt, str):
        raise _bad("prompt", "'prompt' must be a string (one prompt per request; token lists are not supported).")
    if data.get("echo"):
        raise _bad("echo", "'echo' is not supported.")
    return _common(data, [{"role": "user", "content": prompt}], chat_template=False)


def _message(index: int, message: Any) -> Message:
    where = f"messages[{index}]"
    if not isinstance(message, dict):
        raise _bad(where, f"{where} must be an object with 'role' and 'content'.")
    refuse_unsupported_message_keys(where, message)
    role = message.get("role")
    if role not in _ROLES:
        raise _bad(
            f"{where}.role",
            f"{where}.role must be one of system, developer, user, assistant, tool (got {role!r}).",
        )
    content = message.get("content")
    if content is None and role == "assistant":
        content = ""
    if isinstance(content, list):
        parts = []
        for part in content:
            if not isinstance(part, dict) or part.get("type") != "text" or not isinstance(part.get("text"), str):
                raise _bad(f"{where}.content", f"{where}.content: only text parts are supported.")
            parts.append(part["text"])
        content = "".join(parts)
    if not isinstance(content, str):
        raise _bad(f"{where}.content", f"{where}.content must be a string or a list of text parts.")
    out: Message = {"role": _ROLES[role], "content": content}
    thinking = message.get("reasoning_content")
    if role == "assistant" and isinstance(thinking, str) and thinking:
        out["reasoning_content"] = thinking  # templates that keep earlier thinking render it
    if role == "assistant" and message.get("tool_calls"):  # outlier_tui.server.tools
        out["tool_calls"] = assistant_tool_calls(where, message["tool_calls"])
    if role == "tool" and isinstance(message.get("tool_call_id"), str):
        out["tool_call_id"] = message["tool_call_id"]
    return out


def _common(data: dict[str, Any], messages: list[Message], chat_template: bool) -> CompletionRequest:
    max_tokens = data.get("max_completion_tokens", data.get("max_tokens"))
    if max_tokens is None:
        max_tokens = DEFAULT_MAX_TOKENS
    elif not _is_int(max_tokens) or max_tokens < 1:
        raise _bad("max_tokens", "'max_tokens' must be a whole number of at least 1.")
    temperature = _number(data, "temperature", 1.0, 0.0, 2.0)
    top_p = _number(data, "top_p", 1.0, 0.0, 1.0)
    if top_p == 0.0:
        raise _bad("top_p", "'top_p' must be more than 0.")
    seed = data.get("seed")
    if seed is not None and not _is_int(seed):
        raise _bad("seed", "'seed' must be a whole number.")
    n = data.get("n", 1)
    if n not in (1, None):
        raise _bad("n", "Only n=1 is supported: send one request per answer.")
    stream = data.get("stream", False)
    if not isinstance(stream, bool):
        raise _bad("stream", "'stream' must be true or false.")
    options = data.get("stream_options") or {}
    if not isinstance(options, dict):
        raise _bad("stream_options", "'stream_options' must be an object.")
    model = data.get("model")
    if model is not None and not isinstance(model, str):
        raise _bad("model", "'model' must be a string.")
    params = GenerationParams(
        max_tokens=int(max_tokens),
        temperature=temperature,
        top_p=top_p,
        seed=seed,
        chat_template=chat_template,
        enable_thinking=_enable_thinking(data.get("chat_template_kwargs")),
    )
    return CompletionRequest(
        messages, params, stream, bool(options.get("include_usage")), _stop(data.get("stop")), model
    )


def _enable_thinking(kwargs: Any) -> bool | None:
    """`chat_template_kwargs.enable_thinking` (as vLLM and SGLang take it); None: the template's default."""
    if kwargs is None:
        return None
    if not isinstance(kwargs, dict):
        raise _bad("chat_template_kwargs", "'chat_template_kwargs' must be an object.")
    value = kwargs.get("enable_thinking")
    if value is not None and not isinstance(value, bool):
        raise _bad("chat_template_kwargs", "'chat_template_kwargs.enable_thinking' must be true or false.")
    return value


def _stop(stop: Any) -> tuple[str, ...]:
    if stop is None:
        return ()
    if isinstance(stop, str):
        stop = [stop]
    if not isinstance(stop, list) or not all(isinstance(s, str) and s for s in stop):
        raise _bad("stop", "'stop' must be a non-empty string or a list of them.")
    if len(stop) > MAX_STOPS:
        raise _bad("stop", f"'stop' takes at most {MAX_STOPS} sequences (got {len(stop)}).")
    if (longest := max(len(s) for s in stop)) > MAX_STOP_CHARS:
        raise _bad("stop", f"A stop sequence may be at most {MAX_STOP_CHARS} characters long (got {longest}).")
    return tuple(stop)


def _number(data: dict[str, Any], name: str, default: float, low: float, high: float) -> float:
    value = data.get(name)
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not low <= value <= high:
        raise _bad(name, f"'{name}' must be a number from {low:g} to {high:g}.")
    return float(value)


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _bad(param: str, message: str) -> ApiError:
    return ApiError(400, message, param=param, code="invalid_value")
