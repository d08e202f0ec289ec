"""Which request fields this server honours; every other field is refused by name.

A client that sends `logit_bias` or `response_format` expects them to
act: ignoring them silently gives answers that look right and are not. Fields
the server does not implement are accepted only at the value that asks for
nothing (what many clients send by default, e.g. `frequency_penalty: 0`);
anything else is a 400 naming the field. To implement a field, move it from
NO_OP to the endpoint's HONOURED set (and parse it in requests.py).
"""

from __future__ import annotations

import json
from typing import Any

from outlier_tui.server.errors import ApiError

_COMMON = frozenset(
    {"model", "max_tokens", "temperature", "top_p", "seed", "n", "stream", "stream_options", "stop", "user"}
)
HONOURED = {
    "chat": _COMMON | {"messages", "max_completion_tokens", "chat_template_kwargs", "metadata", "tools", "tool_choice"},
    "text": _COMMON | {"prompt", "echo"},
}
MESSAGE_HONOURED = frozenset({"role", "content", "reasoning_content", "tool_calls", "tool_call_id"})

# Not implemented: accepted only as null or one of these values (each asks for nothing).
NO_OP: dict[str, tuple[Any, ...]] = {
    "frequency_penalty": (0,),
    "presence_penalty": (0,),
    "logprobs": (False,),
    "top_logprobs": (0,),
    "logit_bias": ({},),
    "response_format": ({"type": "text"},),
    "parallel_tool_calls": (True, False),
    "functions": ([],),
    "function_call": ("none",),
    "store": (False,),
    "best_of": (1,),
    "suffix": ("",),
    "modalities": (["text"],),
}
MESSAGE_NO_OP: dict[str, tuple[Any, ...]] = {"refusal": ("",), "function_call": ()}


def refuse_unsupported(data: dict[str, Any], endpoint: str) -> None:
    """ApiError(400) for the first field of `data` this endpoint ("chat" or "text") does not honour."""
    _refuse(data, HONOURED[endpoint], NO_OP, "")


def refuse_unsupported_message_keys(where: str, message: dict[str, Any]) -> None:
    """The same for the keys of one chat message (`where`: e.g. "messages[2]")."""
    _refuse(message, MESSAGE_HONOURED, MESSAGE_NO_OP, where + ".")


def _refuse(data: dict[str, Any], honoured: frozenset[str], no_op: dict[str, tuple[Any, ...]], prefix: str) -> None:
    for name, value in data.items():
        if name in honoured or value is None:
            continue
        if name in no_op:
            if any(_same(value, neutral) for neutral in no_op[name]):
                continue
            raise ApiError(
                400,
                f"'{prefix}{name}' is not supported by this server; leave it out"
                + (" or send " + " / ".join(_show(v) for v in no_op[name]) if no_op[name] else "")
                + ".",
                param=prefix + name,
                code="unsupported_parameter",
            )
        raise ApiError(
            400,
            f"Unknown field '{prefix}{_short(name)}': this server does not support it; leave it out.",
            param=prefix + _short(name),
            code="unsupported_parameter",
        )


def _same(value: Any, neutral: Any) -> bool:
    """Equal, with booleans and numbers kept apart (JSON's false is not 0)."""
    if isinstance(value, bool) != isinstance(neutral, bool):
        return False
    return bool(value == neutral)


def _show(value: Any) -> str:
    return json.dumps(value)


def _short(name: str) -> str:
    return name if len(name) <= 64 else name[:61] + "..."
