"""run_app(args): wire the real engine, store and model choice into the app."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path

from outlier_tui.chat_params import attach_limit_from_args, params_from_args


def run_app(args: argparse.Namespace) -> int:
    """Run the full-screen app until the user quits; returns the exit status."""
    from engine.errors import OutlierError
    from outlier_tui.app.main import OutlierApp
    from outlier_tui.core.chat import ChatError, chat_from_option
    from outlier_tui.engine_adapter import engine_from_args
    from outlier_tui.model_choice import resolve_model_dir
    from outlier_tui.store import StoreError
    from outlier_tui.store_recovery import open_store

    try:
        store, notice = open_store()
    except StoreError as exc:
        print(f"outlier: {exc}", file=sys.stderr)
        return 1
    if notice:  # also in the terminal after the full screen is gone
        print(f"outlier: {notice}", file=sys.stderr)
    try:  # an unknown --chat ID is refused before the screen starts, as plain mode does
        chat_from_option(store, getattr(args, "chat", None))
    except ChatError as exc:
        store.close()
        print(f"outlier: {exc}", file=sys.stderr)
        return 1
    fake = bool(getattr(args, "fake_engine", False))
    server = getattr(args, "server", None)
    try:
        engine = engine_from_args(args)
    except OutlierError as exc:
        store.close()
        print(f"outlier: {exc}", file=sys.stderr)
        return 1
    cache_mb = getattr(args, "cache_mb", None)
    model = getattr(args, "model", None)
    resolver: Callable[..., Path | str] | None = None if fake else resolve_model_dir
    if server:  # --model names the server's model ('' : its first); nothing to resolve here
        resolver = lambda name, on_progress: name or ""  # noqa: E731
    try:
        app = OutlierApp(
            engine,
            store,
            model_dir=model or ("fake-model" if fake else None),
            cache_bytes=int(cache_mb * 2**20) if cache_mb else None,
            theme=getattr(args, "theme", None),
            chat=getattr(args, "chat", None),
            resolve_model=resolver,
            params=params_from_args(args),
            attach_limit=attach_limit_from_args(args),
            startup_notes=(notice,) if notice else (),
            demo_model=not (fake or server or model),
        )
        app.run()
        return int(app.return_code or 0)
    finally:
        engine.close()
        store.close()
