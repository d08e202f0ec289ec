"""A request body from bytes to a JSON object, refusing what would fail later as a 500.

Strict UTF-8 (json.loads on bytes would let surrogates through), nesting
deeper than the parser's recursion limit, numbers too long to convert, and
strings holding a lone UTF-16 surrogate (escaped as \\ud800 in the JSON text:
no tokenizer can encode it) are all 400s naming what is wrong. So is a body of
more than MAX_CONTAINERS objects and arrays, counted before parsing: each
costs Python 60-80 bytes, so 3.9 MB of `[],` would take ~90 MB to parse.
"""

from __future__ import annotations

import json
import re
from typing import Any

from outlier_tui.server.errors import ApiError

MAX_CONTAINERS = 65536  # JSON objects and arrays in one body (a chat has one per message and part)
# A string in JSON text (possessive: no backtracking state kept, linear in the body).
_STRING = re.compile(rb'"(?:[^"\\]++|\\.)*+"')
# A \\uD800-\\uDFFF escape somewhere in the text: only then can a decoded string hold a surrogate.
_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")


def parse_json(body: bytes) -> dict[str, Any]:
    """The body as a JSON object, or ApiError(400)."""
    if body.count(b"[") + body.count(b"{") > MAX_CONTAINERS and _containers(body) > MAX_CONTAINERS:
        raise _invalid(f"The request body holds more than {MAX_CONTAINERS} JSON objects and arrays.")
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise _invalid(f"The request body is not valid UTF-8 (byte {exc.start}).") from None
    try:
        data = json.loads(text)
    except RecursionError:
        raise _invalid("The request body is nested too deeply.") from None
    except ValueError as exc:  # JSONDecodeError, or an integer with too many digits
        raise _invalid(f"The request body is not valid JSON ({exc}).") from None
    if not isinstance(data, dict):
        raise _invalid("The request body must be a JSON object.")
    if _SURROGATE_ESCAPE.search(text) and (where := _lone_surrogate(data)) is not None:
        raise ApiError(
            400,
            f"{where} holds a lone UTF-16 surrogate (an unpaired \\ud800-\\udfff escape); send valid Unicode.",
            param=where,
            code="invalid_value",
        )
    return data


def _containers(body: bytes) -> int:
    """Objects and arrays in JSON text: brackets outside strings."""
    bare = _STRING.sub(b"", body)
    return bare.count(b"[") + bare.count(b"{")


def _lone_surrogate(data: Any) -> str | None:
    """The path of the first string (or key) that cannot be encoded as UTF-8, or None.
    Iterative: the parser allowed nesting close to the recursion limit."""
    todo: list[tuple[str, Any]] = [("body", data)]
    while todo:
        where, value = todo.pop()
        if isinstance(value, str):
            if not _encodable(value):
                return where
        elif isinstance(value, dict):
            for key, item in value.items():
                if not _encodable(key):
                    return where
                todo.append((key if where == "body" else f"{where}.{key}", item))
        elif isinstance(value, list):
            todo.extend((f"{where}[{i}]", item) for i, item in enumerate(value))
    return None


def _encodable(text: str) -> bool:
    if text.isascii():
        return True
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _invalid(message: str) -> ApiError:
    return ApiError(400, message, code="invalid_json")
