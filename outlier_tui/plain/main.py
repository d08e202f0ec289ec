"""Start-up of the plain mode: read the arguments, open the store, load the model, run.

Interactive when standard input is a terminal, pipe mode otherwise. Every
failure ends as `outlier: <one line>` on stderr and exit status 1.
"""

from __future__ import annotations

import argparse
import os
import sys
import traceback
from pathlib import Path
from typing import TextIO

from engine.errors import OutlierError
from outlier_tui.chat_params import attach_limit_from_args, params_from_args
from outlier_tui.core.chat import chat_from_option, title_from
from outlier_tui.core.format import one_line
from outlier_tui.progress import progress_bar
from outlier_tui.store import ConversationStore


class UsageError(OutlierError):
    """Nothing to answer (empty standard input)."""


def _isatty(stream: TextIO) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False


def choose_chat(store: ConversationStore, value: str | None, interactive: bool, question: str = "") -> int | None:
    """--chat ID|last|new → the chat to continue (None: a new chat in the REPL, nothing saved in a pipe).
    An unknown ID is core.chat's ChatError, the same refusal as the app's."""
    chat = chat_from_option(store, value)
    if chat is None and value == "new" and not interactive:  # a pipe saves into a chat made now
        chat = store.create_chat(title_from(question))
    return chat.id if chat is not None else None


def run_plain(
    args: argparse.Namespace, stdin: TextIO | None = None, stdout: TextIO | None = None, stderr: TextIO | None = None
) -> int:
    """The plain chat: interactive on a terminal, pipe mode when stdin is not one."""
    stdin = stdin or sys.stdin
    stdout = stdout or sys.stdout
    stderr = stderr or sys.stderr
    if stdout is None:
        stderr.write("outlier: standard output is closed: redirect it to a file or /dev/null.\n")
        return 1
    try:
        return _run(args, stdin, stdout, stderr)
    except OutlierError as exc:
        stderr.write(f"outlier: {one_line(exc)}\n")
        return 1
    except (KeyboardInterrupt, SystemExit):
        raise
    except Exception as exc:
        if os.environ.get("OUTLIER_DEBUG"):
            traceback.print_exc(file=stderr)
        stderr.write(f"outlier: {one_line(exc)} (set OUTLIER_DEBUG=1 for details)\n")
        return 1


def _run(args: argparse.Namespace, stdin: TextIO, stdout: TextIO, stderr: TextIO) -> int:
    from outlier_tui.engine_adapter import engine_from_args
    from outlier_tui.model_choice import DEMO_BUILD_LABEL, resolve_model_dir

    interactive = _isatty(stdin)
    question = ""
    if not interactive:
        from outlier_tui.std_streams import read_all

        question = read_all(stdin).rstrip()
        if not question.strip():
            raise UsageError("standard input is empty: pipe a question in, e.g. echo 'hi' | outlier chat --plain")
        from outlier_tui.plain.pipe import piped_message

        question = piped_message(question, attach_limit_from_args(args))
    fake = bool(getattr(args, "fake_engine", False))
    server = getattr(args, "server", None)
    from outlier_tui.store_recovery import open_store

    store, notice = open_store()
    if notice and (interactive or getattr(args, "chat", None)):  # a one-off pipe run saves nothing
        stderr.write(f"outlier: {notice}\n")
    with store:
        chat_id = choose_chat(store, getattr(args, "chat", None), interactive, question)
        engine = engine_from_args(args)
        try:
            if server:  # --model names the server's model ('' : its first)
                model_dir = getattr(args, "model", None) or ""
            else:
                with progress_bar(DEMO_BUILD_LABEL, stderr, transient=True) as on_progress:
                    model_dir = (
                        Path("fake-model") if fake else resolve_model_dir(getattr(args, "model", None), on_progress)
                    )
            cache_mb = getattr(args, "cache_mb", None)
            cache_bytes = int(cache_mb * 1024 * 1024) if cache_mb else None
            with progress_bar("loading model", stderr, transient=True) as on_progress:
                info = engine.load(str(model_dir), cache_bytes=cache_bytes, on_progress=on_progress).result()
            if info.notice:
                print(f"outlier: {info.notice}", file=stderr)
            params = params_from_args(args)
            show_stats = not getattr(args, "no_stats", False)
            if not interactive:
                from outlier_tui.plain.pipe import run_pipe

                return run_pipe(
                    engine,
                    question,
                    stdout,
                    stderr,
                    store=store,
                    chat_id=chat_id,
                    params=params,
                    show_stats=show_stats,
                    show_thinking=bool(getattr(args, "show_thinking", False)),
                    model_info=info,
                )
            from outlier_tui.plain.render import pygments_style, wants_color
            from outlier_tui.plain.session import PlainSession

            session = PlainSession(
                engine,
                store,
                chat_id=chat_id,
                params=params,
                show_stats=show_stats,
                color=wants_color(stdout),
                style=pygments_style(getattr(args, "theme", None)),
                out=stdout,
                err=stderr,
                model_name=Path(info.path).name,
                model_info=info,
                attach_limit=attach_limit_from_args(args),
            )
            return session.run()
        finally:
            engine.close()
