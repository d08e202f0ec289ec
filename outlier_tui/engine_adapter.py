"""The one place outlier_tui constructs an engine.

Keeping the import here means the UIs never pull MLX in unless a real model
is used, and tests or UI demos can swap in the scripted FakeEngine.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from engine.api import EngineClient
from engine.errors import OutlierError

FAKE_REPLY_DELAY = 0.01  # seconds between the pieces of a --fake-reply answer
PROMPT_CACHE_FOLDER = "prompt-caches"  # chats' KV caches between runs, next to the chat store


def engine_from_args(args: argparse.Namespace) -> EngineClient:
    """The engine `outlier chat` options ask for (--fake-engine, --fake-reply FILE)."""
    server = getattr(args, "server", None)
    if server:
        return make_engine(server=server, api_key=getattr(args, "api_key", None))
    fake = bool(getattr(args, "fake_engine", False))
    reply_path = getattr(args, "fake_reply", None)
    if reply_path is None:
        if fake:
            return make_engine(fake=True)
        from outlier_tui.kv_args import kv_engine_options
        from outlier_tui.store import data_dir

        options = kv_engine_options(args, str(data_dir() / PROMPT_CACHE_FOLDER))
        options["compute_dtype"] = getattr(args, "compute_dtype", "auto")
        options["page_cache"] = {"on": True, "off": False}.get(getattr(args, "page_cache", "auto"))
        return make_engine(engine_options=options)
    if not fake:
        raise OutlierError("--fake-reply only works with --fake-engine: add --fake-engine.")
    try:
        reply = Path(reply_path).expanduser().read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        reason = getattr(exc, "strerror", None) or str(exc)
        raise OutlierError(f"--fake-reply {reply_path}: cannot read it ({reason}).") from None
    return make_engine(fake=True, fake_reply=reply)


def make_engine(
    fake: bool = False,
    fake_reply: str | None = None,
    server: str | None = None,
    api_key: str | None = None,
    engine_options: dict | None = None,
) -> EngineClient:
    """A new engine: the real MLX one, or with fake=True the scripted FakeEngine (no
    model needed), answering `fake_reply` (a file's text) to everything when given;
    with server=URL a client of that OpenAI-compatible server (no model loaded here)."""
    if server:
        from engine.remote import RemoteEngine

        return RemoteEngine(server, api_key=api_key)
    if fake:
        from engine.fake import FakeEngine

        if fake_reply is None:
            return FakeEngine()
        # Paced a little, so a UI driven by a reply file visibly streams.
        return FakeEngine(script=lambda messages: fake_reply, token_delay=FAKE_REPLY_DELAY)
    from engine import Engine

    return Engine(**(engine_options or {}))
