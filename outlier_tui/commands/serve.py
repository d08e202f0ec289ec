"""`outlier serve`: the streamed engine behind an OpenAI-compatible HTTP API.

The model loads first (progress on stderr), then uvicorn serves the Starlette
app from outlier_tui.server until Ctrl-C. Errors are one line and exit 1.
"""

from __future__ import annotations

import argparse
import ipaddress
import os
import socket
import sys

from outlier_tui import arg_types
from outlier_tui.commands.failure import fail as _fail
from outlier_tui.commands.failure import os_error_line

HELP = "serve a model over an OpenAI-compatible HTTP API (/v1/chat/completions, /v1/completions, ...)"


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
    parser.add_argument(
        "--api-key",
        metavar="KEY",
        default=os.environ.get("OUTLIER_API_KEY"),
        help="require 'Authorization: Bearer KEY' (default: $OUTLIER_API_KEY; none: open)",
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


def run(args: argparse.Namespace) -> int:
    from engine import Engine, OutlierError
    from outlier_tui.model_choice import resolve_model_dir
    from outlier_tui.progress import progress_bar

    if not 1 <= args.port <= 65535:
        return _fail(f"--port must be 1-65535, got {args.port}")
    if args.max_queue < 0:
        return _fail("--max-queue must be 0 or more")
    try:
        import uvicorn

        from outlier_tui.server.app import build_app
        from outlier_tui.server.routes import ServerConfig
    except ImportError as exc:
        return _fail(f"the server needs {exc.name}: pip install starlette uvicorn")
    if (problem := _cannot_listen(args.host, args.port)) is not None:
        return _fail(problem)  # before a model load that may take minutes
    engine = None
    try:
        with progress_bar("building demo model") as on_progress:
            model_dir = resolve_model_dir(args.model, on_progress=on_progress)
        engine = Engine(compute_dtype=args.compute_dtype, page_cache=arg_types.PAGE_CACHE[args.page_cache])
        cache_bytes = None if args.cache_mb is None else int(args.cache_mb * 1024 * 1024)
        with progress_bar("loading model") as on_progress:
            engine.load(str(model_dir), cache_bytes, on_progress=on_progress).result()
        config = ServerConfig(
            model_name=args.name or model_dir.name,
            api_key=args.api_key or None,
            max_waiting=args.max_queue,
            max_body_bytes=int(args.max_body_mb * 1024 * 1024),
        )
        if not args.api_key and not _is_loopback(args.host):
            print(
                f"outlier: warning: serving on {args.host} without --api-key: anyone who can reach "
                "this port can use the model. Pass --api-key KEY (or set OUTLIER_API_KEY).",
                file=sys.stderr,
                flush=True,
            )
        print(
            f"outlier: serving {config.model_name} at http://{_url_host(args.host)}:{args.port}/v1 (Ctrl-C stops)",
            file=sys.stderr,
            flush=True,
        )
        server = uvicorn.Server(
            uvicorn.Config(
                build_app(engine, config), host=args.host, port=args.port, log_level="info", timeout_graceful_shutdown=3
            )
        )
        server.run()
        return 0 if server.started else _fail(f"could not listen on {args.host}:{args.port} (see above).")
    except OutlierError as exc:
        return _fail(str(exc))
    except OSError as exc:
        return _fail(os_error_line(exc))
    finally:
        if engine is not None:
            engine.close()


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
