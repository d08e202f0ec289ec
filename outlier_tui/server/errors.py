"""OpenAI-style error bodies: {"error": {"message", "type", "param", "code"}} with the right status."""

from __future__ import annotations

from starlette.responses import JSONResponse

_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    404: "not_found_error",
    405: "invalid_request_error",
    413: "invalid_request_error",
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
        return JSONResponse(self.body(), status_code=self.status, headers=headers)


def engine_error(message: str, error_type: str) -> ApiError:
    """The ApiError for an engine's GenerationFailed (500 unless it is the client's mistake)."""
    status, code = _ENGINE_STATUS.get(error_type, (500, "engine_error"))
    return ApiError(status, message, code=code)
