"""`outlier serve`: the streamed engine behind OpenAI-compatible and Anthropic Messages HTTP APIs.

The model loads first (progress on stderr), then uvicorn serves the Starlette
app from outlier_tui.server until Ctrl-C. Errors are one line and exit 1.
Everything a hostile client could exhaust is bounded here or in the server
package: open files and connections (server.fd_limit, server.connections),
slow clients, request sizes, the log (server.log_limit).
"""

from __future__ import annotations

import argparse
import ipaddress
import os
import socket
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from outlier_tui import arg_types
from outlier_tui.commands.failure import fail as _fail
from outlier_tui.commands.failure import os_error_line
from outlier_tui.kv_args import add_kv_arguments

if TYPE_CHECKING:
    from engine.api import EngineClient, Message

HELP = "serve a model over OpenAI's and Anthropic's HTTP APIs (/v1/chat/completions, /v1/messages, ...)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--model",
        metavar="DIR",
        type=arg_types.model_dir,
        help="mlx-community MoE model folder (default: the demo MoE)",
    )
    parser.add_argument(
        "--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1; 0.0.0.0 for every interface)"
    )
    parser.add_argument("--port", type=arg_types.port, default=8080, help="TCP port (default 8080)")
    parser.add_argument(
        "--cache-mb",
        metavar="MB",
        type=arg_types.positive_mb,
        help="expert-cache budget in MiB (default: chosen from free memory)",
    )
    arg_types.add_compute_dtype(parser)
    arg_types.add_page_cache(parser)
    add_kv_arguments(parser, on_disk=False)
    parser.add_argument(
        "--api-key-file",
        metavar="PATH",
        help="require 'Authorization: Bearer KEY' with one of the keys in PATH (one per line); with "
        "several keys, each key's prompt cache is its own (default: $OUTLIER_API_KEY; neither: open)",
    )
    parser.add_argument(
        "--api-key",
        metavar="KEY",
        help="one key on the command line, where other local users can read it: prefer --api-key-file "
        "or $OUTLIER_API_KEY",
    )
    parser.add_argument(
        "--name", metavar="NAME", help="model name in /v1/models and answers (default: the model folder's name)"
    )
    parser.add_argument(
        "--max-queue",
        metavar="N",
        type=arg_types.non_negative_int,
        default=8,
        help="requests that may wait behind the running one before 429 (default 8)",
    )
    parser.add_argument(
        "--max-body-mb",
        metavar="MB",
        type=arg_types.positive_mb,
        default=4.0,
        help="largest request body accepted, in MiB (default 4; larger: 413)",
    )
    parser.add_argument(
        "--fake-engine",
        action="store_true",
        help="serve the scripted fake engine, no model: test a client against the API",
    )
    parser.add_argument(
        "--fake-reply",
        metavar="FILE",
        action="append",
        help="with --fake-engine: answers stream this file's text (<think>...</think> is thinking, "
        '<tool_call>{"name": ..., "arguments": {...}}</tool_call> a tool call; gpt-oss channels work too); '
        "given twice: the second file answers requests whose last message is a tool result",
    )
    parser.add_argument(
        "--fake-tool-parser",
        metavar="NAME",
        default="json_tools",
        help="with --fake-engine: the mlx-lm tool parser that reads the reply's tool calls "
        "(default json_tools; qwen3_coder, pythonic, mistral, glm47, ...)",
    )
    parser.add_argument(
        "--max-connections",
        metavar="N",
        type=arg_types.positive_int,
        help="connections served at once, beyond them 503 (default 4096, or what the open-file limit allows)",
    )
    parser.add_argument(
        "--client-timeout",
        metavar="S",
        type=arg_types.positive(float, "a number of seconds"),
        default=10.0,
        help="seconds a client may take to send a request's headers, stay idle between requests, "
        "or stall a body (default 10)",
    )
    parser.add_argument(
        "--allowed-host",
        metavar="NAME",
        action="append",
        default=[],
        help="a name clients may reach the server by (Host header), beyond the --host address and "
        "localhost; repeatable; '*' accepts any (behind a proxy that checks it)",
    )
    parser.add_argument(
        "--cors-origin",
        metavar="ORIGIN",
        action="append",
        default=[],
        help="let web pages of ORIGIN (e.g. https://app.example) call the API; repeatable (default: none)",
    )


def run(args: argparse.Namespace) -> int:
    from engine import OutlierError
    from outlier_tui.engine_adapter import make_engine
    from outlier_tui.kv_args import kv_engine_options
    from outlier_tui.model_choice import resolve_model_dir
    from outlier_tui.progress import progress_bar

    if not 1 <= args.port <= 65535:
        return _fail(f"--port must be 1-65535, got {args.port}")
    if args.max_queue < 0:
        return _fail("--max-queue must be 0 or more")
    if args.api_key and args.api_key_file:
        return _fail("give --api-key-file or --api-key, not both")
    try:
        import uvicorn

        from outlier_tui.server import fd_limit, log_limit
        from outlier_tui.server.app import build_app
        from outlier_tui.server.connections import server_config
        from outlier_tui.server.keys import KeyFileError, KeyRing, read_key_file
        from outlier_tui.server.prompt_bound import prompt_char_limit
        from outlier_tui.server.routes import ServerConfig

        fd_limit.import_mlx_lm()  # before anything else imports it and lowers the open-file limit
    except ImportError as exc:
        return _fail(f"the server needs {exc.name}: pip install starlette uvicorn")
    soft, hard = fd_limit.raise_soft_limit()
    max_connections = fd_limit.connection_cap(args.max_connections, soft, hard)
    if isinstance(max_connections, str):
        return _fail(max_connections)
    try:
        keys = _api_keys(args, read_key_file)
        if keys:
            KeyRing(keys)  # refuse an empty key now, not at the first request
    except KeyFileError as exc:
        return _fail(str(exc))
    if (problem := _cannot_listen(args.host, args.port)) is not None:
        return _fail(problem)  # before a model load that may take minutes
    engine = None
    try:
        prompt_chars = None
        if args.fake_engine or args.fake_reply:  # --fake-reply without --fake-engine: a clear error
            engine, name = _fake_engine(args)
        else:
            with progress_bar("building demo model") as on_progress:
                model_dir = resolve_model_dir(args.model, on_progress=on_progress)
            engine = make_engine(
                engine_options=dict(
                    compute_dtype=args.compute_dtype,
                    page_cache=arg_types.PAGE_CACHE[args.page_cache],
                    **kv_engine_options(args),
                )
            )
            name = model_dir.name
            cache_bytes = None if args.cache_mb is None else int(args.cache_mb * 1024 * 1024)
            with progress_bar("loading model") as on_progress:
                info = engine.load(str(model_dir), cache_bytes, on_progress=on_progress).result()
            prompt_chars = prompt_char_limit(model_dir, info.context_length)
        config = ServerConfig(
            model_name=args.name or name,
            api_keys=tuple(keys),
            max_waiting=args.max_queue,
            max_body_bytes=int(args.max_body_mb * 1024 * 1024),
            prompt_chars=prompt_chars,
            client_timeout=args.client_timeout,
            bind_host=args.host,
            allowed_hosts=tuple(args.allowed_host),
            cors_origins=tuple(args.cors_origin),
        )
        if args.api_key:
            _warn(
                "the key given with --api-key is visible to every local user (ps, /proc/PID/cmdline); "
                "pass it with --api-key-file PATH or $OUTLIER_API_KEY."
            )
        if not keys and not _is_loopback(args.host):
            _warn(
                f"serving on {args.host} without a key: anyone who can reach this port can use the model. "
                "Pass --api-key-file PATH (or set OUTLIER_API_KEY)."
            )
        print(
            f"outlier: serving {config.model_name} at http://{_url_host(args.host)}:{args.port}/v1 (Ctrl-C stops)",
            file=sys.stderr,
            flush=True,
        )
        uv_config = server_config(build_app(engine, config), args.host, args.port, max_connections, args.client_timeout)
        log_limit.install()  # after uvicorn configured its loggers
        server = uvicorn.Server(uv_config)
        server.run()
        return 0 if server.started else _fail(f"could not listen on {args.host}:{args.port} (see above).")
    except OutlierError as exc:
        return _fail(str(exc))
    except OSError as exc:
        return _fail(os_error_line(exc))
    finally:
        if engine is not None:
            engine.close()


def _fake_engine(args: argparse.Namespace) -> tuple[EngineClient, str]:
    """The scripted engine (`--fake-engine`), loaded, and its model name."""
    from engine import OutlierError
    from engine.fake import FakeEngine
    from engine.tool_parsers import available, load_parser
    from outlier_tui.engine_adapter import FAKE_REPLY_DELAY

    if not args.fake_engine:
        raise OutlierError("--fake-reply only works with --fake-engine: add --fake-engine.")
    if args.model is not None:
        raise OutlierError("--fake-engine serves no model: drop --model.")
    try:
        load_parser(args.fake_tool_parser)
    except ValueError:
        raise OutlierError(
            f"--fake-tool-parser {args.fake_tool_parser}: mlx-lm has no such parser; pick one of "
            + ", ".join(available())
        ) from None
    replies = [_read_reply(path) for path in args.fake_reply or ()]
    if len(replies) > 2:
        raise OutlierError("--fake-reply takes one file, or two: the second answers tool results.")

    def script(messages: Sequence[Message]) -> str:
        after_tool = len(replies) == 2 and bool(messages) and messages[-1]["role"] == "tool"
        return replies[1] if after_tool else replies[0]

    engine = FakeEngine(
        script=script if replies else None,
        token_delay=FAKE_REPLY_DELAY if replies else 0.0,
        tool_parser=args.fake_tool_parser,
    )
    engine.load("fake").result()
    return engine, "fake"


def _read_reply(path: str) -> str:
    from engine import OutlierError

    try:
        return Path(path).expanduser().read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        reason = getattr(exc, "strerror", None) or str(exc)
        raise OutlierError(f"--fake-reply {path}: cannot read it ({reason}).") from None


def _api_keys(args: argparse.Namespace, read_key_file) -> list[str]:
    """The keys to accept: --api-key-file, else --api-key, else $OUTLIER_API_KEY (none: open)."""
    if args.api_key_file:
        return read_key_file(args.api_key_file)
    key = args.api_key or os.environ.get("OUTLIER_API_KEY") or ""
    return [key.strip()] if key.strip() else []


def _warn(message: str) -> None:
    print(f"outlier: warning: {message}", file=sys.stderr, flush=True)


def _cannot_listen(host: str, port: int) -> str | None:
    """Why binding host:port fails now (in use, no such address), or None."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as exc:
        return f"--host {host}: {exc.strerror}"
    family, kind, proto, _, address = infos[0]
    with socket.socket(family, kind, proto) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn binds
        try:
            probe.bind(address)
        except OSError as exc:
            return f"cannot listen on {host}:{port} ({exc.strerror}): pick another --port or --host."
    return None


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _url_host(host: str) -> str:
    return f"[{host}]" if ":" in host else host
