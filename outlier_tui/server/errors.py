"""OpenAI-style error bodies: {"error": {"message", "type", "param", "code"}} with the right status."""

from __future__ import annotations

import json
import logging
from typing import Any

from starlette.responses import JSONResponse

log = logging.getLogger("outlier.serve")

_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    405: "invalid_request_error",
    408: "invalid_request_error",
    413: "invalid_request_error",
    415: "invalid_request_error",
    429: "rate_limit_error",
    500: "server_error",
    503: "service_unavailable",
}

# Engine failures (GenerationFailed.error_type) that are the request's fault or a busy server.
_ENGINE_STATUS = {
    "PromptTooLongError": (400, "context_length_exceeded"),
    "RequestError": (400, "invalid_request"),
    "EngineStateError": (503, "model_not_ready"),
}


class AsciiJSONResponse(JSONResponse):
    """JSON with every non-ASCII character escaped: an error message that quotes the client's
    text (even a lone surrogate) can always be encoded."""

    def render(self, content: Any) -> bytes:
        return json.dumps(content, ensure_ascii=True, separators=(",", ":")).encode("ascii")


class ApiError(Exception):
    """A request the server refuses; becomes an OpenAI-style JSON error."""

    def __init__(self, status: int, message: str, *, code: str | None = None, param: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.code = code
        self.param = param

    def body(self) -> dict:
        return {
            "error": {
                "message": self.message,
                "type": _TYPES.get(self.status, "server_error"),
                "param": self.param,
                "code": self.code,
            }
        }

    def response(self) -> JSONResponse:
        headers = {"Retry-After": "1"} if self.status in (429, 503) else None
        if self.status == 401:
            headers = {"WWW-Authenticate": "Bearer"}
        return AsciiJSONResponse(self.body(), status_code=self.status, headers=headers)


def engine_error(message: str, error_type: str) -> ApiError:
    """The ApiError for an engine's GenerationFailed (500 unless it is the client's mistake).
    A 500's message stays in the server's log: it can name the server's files and lines."""
    status, code = _ENGINE_STATUS.get(error_type, (500, "engine_error"))
    if status == 500:
        log.error("engine failure (%s): %s", error_type, message)
        message = f"The engine failed on this request ({error_type}); see the server's log."
    return ApiError(status, message, code=code)
