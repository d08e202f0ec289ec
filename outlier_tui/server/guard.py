"""Cross-site safety: no web page can make this server work or read its answers.

A browser sends a "simple" cross-origin POST (text/plain, form bodies) without
asking first, so POST bodies must say `Content-Type: application/json`, which
a page can only send after a CORS preflight that this server does not grant
(CORS is off unless `--cors-origin` names an origin; then Starlette's
CORSMiddleware answers preflights). DNS rebinding points a page's own name at
this machine, so its requests carry that name in `Host`: only the bound
address, localhost, this machine's name when bound to other interfaces, and
`--allowed-host` names are accepted. An IP-literal Host cannot be rebound, so on
a wildcard bind (0.0.0.0, ::) any address is fine.
"""

from __future__ import annotations

import ipaddress
import socket

from starlette.datastructures import Headers
from starlette.types import ASGIApp, Receive, Scope, Send

from outlier_tui.server.errors import ApiError

_LOOPBACK_NAMES = ("localhost", "127.0.0.1", "::1")
_BODY_METHODS = ("POST", "PUT", "PATCH")


class HostRule:
    """Which `Host` header values name this server."""

    def __init__(self, bind_host: str, allowed: tuple[str, ...] = ()) -> None:
        self.any = "*" in allowed
        self.names = {name.lower().rstrip(".") for name in (*_LOOPBACK_NAMES, bind_host, *allowed)}
        self.wildcard = bind_host in ("0.0.0.0", "::", "")
        if not _is_loopback(bind_host):  # reached by this machine's name on a network
            host = socket.gethostname().lower()
            self.names |= {host, host.split(".")[0] + ".local"}

    def allows(self, host_header: str) -> bool:
        if self.any:
            return True
        name = _hostname(host_header)
        if name in self.names:
            return True
        return self.wildcard and _is_ip(name)


class RequestGuard:
    """ASGI middleware: refuse a foreign Host (403) and a non-JSON POST body (415) before any work."""

    def __init__(self, app: ASGIApp, hosts: HostRule) -> None:
        self.app = app
        self.hosts = hosts

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            headers = Headers(scope=scope)
            problem = None
            host = headers.get("host")
            if host is not None and not self.hosts.allows(host):
                problem = ApiError(
                    403,
                    f"Host {_hostname(host)[:100]!r} is not this server's name: start it with "
                    "--allowed-host NAME to accept it.",
                    code="host_not_allowed",
                )
            elif scope["method"] in _BODY_METHODS and not _is_json(headers.get("content-type", "")):
                problem = ApiError(
                    415,
                    "Request bodies must be JSON sent with 'Content-Type: application/json'"
                    f" (got {headers.get('content-type', 'none')[:100]!r}).",
                    code="unsupported_media_type",
                )
            if problem is not None:
                await problem.response()(scope, receive, send)
                return
        await self.app(scope, receive, send)


def _is_json(content_type: str) -> bool:
    return content_type.split(";", 1)[0].strip().lower() == "application/json"


def _hostname(host_header: str) -> str:
    """The name in a Host header, without port or IPv6 brackets, lower case."""
    host = host_header.strip().lower()
    if host.startswith("["):
        return host[1:].split("]", 1)[0]
    name, colon, port = host.rpartition(":")
    if colon and port.isdigit() and ":" not in name:
        host = name
    return host.rstrip(".")


def _is_ip(name: str) -> bool:
    try:
        ipaddress.ip_address(name)
    except ValueError:
        return False
    return True


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
