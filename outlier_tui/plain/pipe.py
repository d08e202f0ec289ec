"""Pipe mode: `echo "question" | outlier chat --plain`.

The whole of standard input is one user message (`@path` in it attaches a
file); only the answer goes to stdout (so scripts can capture it). Progress,
stats, errors and, with --show-thinking, a reasoning model's thinking go to
stderr.
"""

from __future__ import annotations

from pathlib import Path
from typing import TextIO

from engine.api import EngineClient, GenerationParams, ModelInfo
from engine.reasoning import THINKING
from outlier_tui.core.attachments import DEFAULT_LIMIT_BYTES, AttachmentError, expand_attachments
from outlier_tui.core.chat import ChatSession, TurnResult, one_off_turn
from outlier_tui.core.format import stats_line
from outlier_tui.plain.render import StreamRenderer, wants_color
from outlier_tui.store import ConversationStore

EXIT_OK, EXIT_FAILED, EXIT_INTERRUPTED, EXIT_BROKEN_PIPE = 0, 1, 130, 141


def ask_once(
    engine: EngineClient,
    question: str,
    out: TextIO,
    *,
    store: ConversationStore | None = None,
    chat_id: int | None = None,
    params: GenerationParams = GenerationParams(),
    color: bool = False,
    thinking_out: TextIO | None = None,
    model_info: ModelInfo | None = None,
) -> TurnResult:
    """Send `question` (appended to chat_id's history if given) and stream the answer to `out`.

    With a chat the question is committed before generation and the answer
    saved as it streams; without one nothing is stored. Thinking goes to
    `thinking_out` when given, else nowhere.
    """

    def write(text: str) -> None:
        out.write(text)
        out.flush()

    renderer = StreamRenderer(write, color=color)
    thinking_started = []

    def on_part(kind: str, text: str) -> None:
        if kind != THINKING:
            renderer.feed(text)
        elif thinking_out is not None:
            thinking_started.append(True)
            thinking_out.write(text)
            thinking_out.flush()

    if store is not None and chat_id is not None:
        session = ChatSession(engine, store, chat_id=chat_id, params=params, model_info=model_info)
        turn = session.send(question, on_part)
    else:
        turn = one_off_turn(engine, question, params, on_part)
    result = turn.run()
    if thinking_started and thinking_out is not None:
        thinking_out.write("\n")
    renderer.finish()
    if result.text and not renderer.ends_with_newline:
        write("\n")
    return result


def piped_message(text: str, attach_limit: int = DEFAULT_LIMIT_BYTES, cwd: Path | None = None) -> str:
    """Standard input as the message, `@path` files attached. Checked before any
    model loads; AttachmentError (one line) means nothing is sent."""
    try:
        return expand_attachments(text, cwd, attach_limit)[0]
    except AttachmentError as exc:
        raise AttachmentError(f"{exc} Nothing was sent.") from None


def run_pipe(
    engine: EngineClient,
    question: str,
    out: TextIO,
    err: TextIO,
    *,
    store: ConversationStore | None = None,
    chat_id: int | None = None,
    params: GenerationParams = GenerationParams(),
    show_stats: bool = True,
    show_thinking: bool = False,
    model_info: ModelInfo | None = None,
) -> int:
    """Answer one piped question (see piped_message); returns 0, 1 (failed),
    130 (interrupted) or 141 (stdout closed)."""
    try:
        result = ask_once(
            engine,
            question,
            out,
            store=store,
            chat_id=chat_id,
            params=params,
            color=wants_color(out),
            thinking_out=err if show_thinking else None,
            model_info=model_info,
        )
    except BrokenPipeError:
        _silence(out)
        return EXIT_BROKEN_PIPE
    if result.stats is not None and show_stats:
        err.write(stats_line(result.stats) + "\n")
    if chat_id is not None and not result.save_error:
        err.write(f"Saved in chat #{chat_id} (continue it with --chat {chat_id}).\n")
    if result.save_error:
        err.write(f"outlier: {result.save_error}\n")
        return EXIT_FAILED
    if result.status == "error":
        err.write(f"outlier: {result.error}\n")
        return EXIT_FAILED
    if result.status == "cancelled":
        err.write("outlier: interrupted\n")
        return EXIT_INTERRUPTED
    return EXIT_OK


def _silence(out: TextIO) -> None:
    from outlier_tui.std_streams import silence_stdout

    silence_stdout(out)
