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
from outlier_tui.core.attachments import DEFAULT_LIMIT_BYTES, AttachmentError, expand_attachments
from outlier_tui.core.chat import ChatSession, PartFn, Turn, TurnResult, one_off_turn
from outlier_tui.one_shot import StartFn, answer_once, stream_turn
from outlier_tui.store import ConversationStore


def _starter(
    engine: EngineClient,
    question: str,
    store: ConversationStore | None,
    chat_id: int | None,
    params: GenerationParams,
    model_info: ModelInfo | None,
) -> StartFn:
    """How the answer starts: appended to chat_id's history (the question committed
    before generation, the answer saved as it streams), or a one-off stored nowhere."""
    if store is None or chat_id is None:
        return lambda on_part: one_off_turn(engine, question, params, on_part)
    session = ChatSession(engine, store, chat_id=chat_id, params=params, model_info=model_info)

    def start(on_part: PartFn) -> Turn:
        return session.send(question, on_part)

    return start


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
    """Send `question` (appended to chat_id's history if given) and stream the answer to `out`;
    thinking goes to `thinking_out` when given, else nowhere."""
    start = _starter(engine, question, store, chat_id, params, model_info)
    return stream_turn(start, out, color=color, thinking_out=thinking_out)


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
    """Answer one piped question (see piped_message); the exit status of
    one_shot.answer_once: 0, 1 (failed), 128 + the signal (stopped), 141 (stdout closed)."""
    start = _starter(engine, question, store, chat_id, params, model_info)
    return answer_once(start, out, err, show_thinking=show_thinking, show_stats=show_stats, saved_in=chat_id).status
