"""One question in, its answer streamed to stdout: `outlier generate` and pipe mode
(`echo question | outlier chat`) both end here, so they stream, split thinking
from the answer and exit the same way.

Only the answer goes to `out` (scripts capture it). Thinking goes to `err` when
asked for, else nowhere; errors are one `outlier: ...` line on `err`. Exit
status: 0 answered, 1 failed, 128 + the signal when stopped (130 for Ctrl-C,
143 for SIGTERM, 129 for SIGHUP), 141 when the reader closed stdout (`| head`).
"""

from __future__ import annotations

import signal
from collections.abc import Callable
from dataclasses import dataclass
from typing import TextIO

from engine.reasoning import THINKING
from outlier_tui.core.chat import PartFn, Turn, TurnResult
from outlier_tui.core.format import stats_line
from outlier_tui.plain.render import StreamRenderer, wants_color
from outlier_tui.std_streams import silence_stdout
from outlier_tui.termination import stop_line

EXIT_OK, EXIT_FAILED, EXIT_BROKEN_PIPE = 0, 1, 141


StartFn = Callable[[PartFn], Turn]  # e.g. lambda on_part: session.send(question, on_part)


def stream_turn(start: StartFn, out: TextIO, *, color: bool = False, thinking_out: TextIO | None = None) -> TurnResult:
    """Run the turn `start(on_part)` makes, writing its answer to `out` as it streams (code highlighted when
    `color`) and its thinking to `thinking_out` (None: dropped). A closed `out`
    raises BrokenPipeError once the turn has been cancelled and saved."""

    def write(text: str) -> None:
        out.write(text)
        out.flush()

    renderer = StreamRenderer(write, color=color)
    thought = False

    def on_part(kind: str, text: str) -> None:
        nonlocal thought
        if kind != THINKING:
            renderer.feed(text)
        elif thinking_out is not None:
            thought = True
            thinking_out.write(text)
            thinking_out.flush()

    result = start(on_part).run()
    if thought and thinking_out is not None:
        thinking_out.write("\n")
    renderer.finish()
    if result.text and not renderer.ends_with_newline:
        write("\n")
    return result


@dataclass
class Answered:
    """How a one-shot answer ended: the exit status, and the result when it streamed to the end."""

    status: int
    result: TurnResult | None = None


def answer_once(
    start: StartFn,
    out: TextIO,
    err: TextIO,
    *,
    show_thinking: bool = False,
    show_stats: bool = False,
    saved_in: int | None = None,
) -> Answered:
    """Stream the turn `start(on_part)` makes to `out` and say on `err` how it ended (see the module's exit statuses).

    show_stats: the stats line after the answer. saved_in: the chat the turn is
    saved in, named on `err` so the user can continue it with --chat.
    """
    try:
        result = stream_turn(start, out, color=wants_color(out), thinking_out=err if show_thinking else None)
    except BrokenPipeError:  # the reader went away (`| head`): stop quietly, like other tools
        silence_stdout(out)
        return Answered(EXIT_BROKEN_PIPE)
    if result.stats is not None and show_stats:
        err.write(stats_line(result.stats) + "\n")
    if saved_in is not None and not result.save_error:
        err.write(f"Saved in chat #{saved_in} (continue it with --chat {saved_in}).\n")
    if result.save_error:
        err.write(f"outlier: {result.save_error}\n")
        return Answered(EXIT_FAILED, result)
    if result.status == "error":
        err.write(f"outlier: {result.error or 'the answer failed'}\n")
        return Answered(EXIT_FAILED, result)
    if result.status == "cancelled":
        signum = result.stopped_by or signal.SIGINT  # the engine stopped it: reads as Ctrl-C
        err.write(f"outlier: {stop_line(signum)}\n")
        return Answered(128 + signum, result)
    return Answered(EXIT_OK, result)
