"""Pipe mode: `echo "question" | outlier chat --plain`.

The whole of standard input is one user message; only the answer goes to
stdout (so scripts can capture it), progress, stats and errors go to stderr.
"""

from __future__ import annotations

from typing import Optional, TextIO

from engine.api import EngineClient, GenerationParams
from outlier_tui.plain.render import StreamRenderer, wants_color
from outlier_tui.plain.stats import answer_line
from outlier_tui.plain.turn import AnswerCollector, TurnResult, one_line
from outlier_tui.store import ConversationStore

EXIT_OK, EXIT_FAILED, EXIT_INTERRUPTED, EXIT_BROKEN_PIPE = 0, 1, 130, 141


def ask_once(
    engine: EngineClient,
    question: str,
    out: TextIO,
    *,
    store: Optional[ConversationStore] = None,
    chat_id: Optional[int] = None,
    params: GenerationParams = GenerationParams(),
    color: bool = False,
) -> TurnResult:
    """Send `question` (appended to chat_id's history if given) and stream the answer to `out`.

    With a chat the question is committed before generation and the answer
    saved as it streams; without one nothing is stored.
    """
    save = None
    if store is not None and chat_id is not None:
        store.add_message(chat_id, "user", question)
        messages = store.engine_messages(chat_id)
        answer_id = store.add_message(chat_id, "assistant", "", status="partial")

        def save(content: str, status: str) -> None:
            store.update_message(answer_id, content, status)
    else:
        messages = [{"role": "user", "content": question}]

    def write(text: str) -> None:
        out.write(text)
        out.flush()

    renderer = StreamRenderer(write, color=color)
    collector = AnswerCollector(renderer.feed, save=save)
    try:
        for event in engine.generate(messages, params):
            collector.handle(event)
    except KeyboardInterrupt:
        engine.cancel()
        collector.cancel()
    except BrokenPipeError:  # the reader went away (`| head`): stop generating, keep what was said
        engine.cancel()
        collector.cancel()
        collector.finish()
        raise
    except Exception as exc:
        collector.fail(one_line(exc))
    renderer.finish()
    if collector.text and not renderer.ends_with_newline:
        write("\n")
    return collector.finish()


def run_pipe(
    engine: EngineClient,
    question: str,
    out: TextIO,
    err: TextIO,
    *,
    store: Optional[ConversationStore] = None,
    chat_id: Optional[int] = None,
    params: GenerationParams = GenerationParams(),
    show_stats: bool = True,
) -> int:
    """Answer one piped question; returns 0, 1 (failed), 130 (interrupted) or 141 (stdout closed)."""
    try:
        result = ask_once(engine, question, out, store=store, chat_id=chat_id, params=params,
                          color=wants_color(out))
    except BrokenPipeError:
        _silence(out)
        return EXIT_BROKEN_PIPE
    if result.stats is not None and show_stats:
        err.write(answer_line(result.stats) + "\n")
    if chat_id is not None:
        err.write(f"Saved in chat #{chat_id} (continue it with --chat {chat_id}).\n")
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
