"""The Starlette app: routes, cross-site guards, and every failure as an OpenAI-style JSON error."""

from __future__ import annotations

import logging

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.middleware.cors import CORSMiddleware
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from engine.api import EngineClient
from outlier_tui.server import anthropic
from outlier_tui.server.errors import ApiError
from outlier_tui.server.guard import HostRule, RequestGuard
from outlier_tui.server.routes import Routes, ServerConfig

log = logging.getLogger("outlier.serve")


def build_app(engine: EngineClient, config: ServerConfig) -> Starlette:
    """An ASGI app serving `engine` (already loaded) under config.model_name."""
    routes = Routes(engine, config)
    messages = anthropic.AnthropicRoutes(routes)
    middleware = [Middleware(RequestGuard, hosts=HostRule(config.bind_host, config.allowed_hosts))]
    if config.cors_origins:  # off by default: no page of another origin may read answers
        middleware.append(
            Middleware(
                CORSMiddleware,
                allow_origins=list(config.cors_origins),
                allow_methods=["GET", "POST"],
                allow_headers=["Authorization", "Content-Type", "x-api-key", "anthropic-version"],
                max_age=600,
            )
        )
    app = Starlette(
        middleware=middleware,
        routes=[
            Route("/v1/chat/completions", routes.chat_completions, methods=["POST"]),
            Route("/v1/completions", routes.completions, methods=["POST"]),
            Route(anthropic.PREFIX, messages.messages, methods=["POST"]),  # Anthropic's Messages API
            Route(anthropic.PREFIX + "/count_tokens", messages.count_tokens, methods=["POST"]),
            Route("/v1/models", routes.models, methods=["GET"]),
            Route("/v1/outlier/telemetry", routes.telemetry, methods=["GET"]),
            Route("/health", routes.health, methods=["GET"]),
        ],
        exception_handlers={ApiError: _api_error, HTTPException: _http_error, Exception: _internal_error},
    )
    app.state.routes = routes
    return app


async def _api_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, ApiError)
    return exc.response()


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    if exc.status_code == 404:
        message = (
            f"No such endpoint {request.url.path}: this server has /v1/chat/completions, "
            "/v1/completions, /v1/messages, /v1/models, /v1/outlier/telemetry and /health."
        )
    elif exc.status_code == 405:
        message = f"{request.method} is not allowed on {request.url.path}."
    else:
        message = str(exc.detail)
    if request.url.path.startswith(anthropic.PREFIX):  # Anthropic's clients read their own shape
        return anthropic.error_response(ApiError(exc.status_code, message))
    return ApiError(exc.status_code, message).response()


async def _internal_error(request: Request, exc: Exception) -> Response:
    log.exception("internal error on %s", request.url.path)
    return ApiError(
        500, f"Internal server error ({type(exc).__name__}); see the server's log.", code="internal_error"
    ).response()
