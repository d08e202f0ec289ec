"""From a job's engine events to OpenAI answers: stop sequences, finish reason, usage, JSON shapes.

`answer()` yields the answer's text pieces (str), the model's thinking
(Thinking: reasoning models, split by the engine) and then one Finish; the two
formats (chat and text completions) shape those into whole responses or
stream chunks. Thinking goes to `reasoning_content`, never into `content`.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncGenerator, Sequence

from engine.api import GenerationDone, GenerationFailed, GenerationStats, TextDelta
from engine.reasoning import THINKING
from outlier_tui.server.errors import engine_error
from outlier_tui.server.pieces import Finish, Piece, Thinking, ToolCall
from outlier_tui.server.queue import Job
from outlier_tui.server.stops import StopFilter


async def answer(job: Job, stops: tuple[str, ...], context: int = 0) -> AsyncGenerator[Piece, None]:
    """Pieces of the answer and thinking, then a Finish; raises ApiError if the engine fails.
    Stop sequences apply to the answer, not to the thinking. context: the model's context
    limit (0: none), where the engine ends an answer as if max_tokens were reached."""
    cut = StopFilter(stops)
    stopped = False
    async for event in job:
        if isinstance(event, TextDelta):
            if stopped:
                continue  # the engine runs at most one more token after job.cancel()
            if event.kind == THINKING:
                if event.text:
                    yield Thinking(event.text)
                continue
            if cut.active:  # off the event loop: other clients (and /health) stay answered
                text, stopped = await asyncio.to_thread(cut.feed, event.text)
            else:
                text = event.text
            if text:
                yield text
            if stopped:
                job.cancel()
        elif isinstance(event, GenerationDone):
            if not stopped and (tail := cut.flush()):
                yield tail
            stats = event.stats
            room = job.params.max_tokens
            if context:
                room = min(room, context - stats.prompt_tokens - stats.cached_tokens)
            length = not stopped and not event.cancelled and stats.generation_tokens >= room
            yield Finish("length" if length else "stop", stats, cut.matched)
        elif isinstance(event, GenerationFailed):
            raise engine_error(event.message, event.error_type)


def usage(stats: GenerationStats) -> dict:
    prompt = stats.prompt_tokens + stats.cached_tokens
    return {
        "prompt_tokens": prompt,
        "completion_tokens": stats.generation_tokens,
        "total_tokens": prompt + stats.generation_tokens,
        "prompt_tokens_details": {"cached_tokens": stats.cached_tokens},
    }


# This answer's own engine figures, next to `usage` (an extension OpenAI clients ignore): the
# engine runs one answer at a time and counts them over exactly that answer, so a remote
# client (engine.remote) need not guess them from telemetry that covers every client.
ANSWER_FIGURES = (
    "expert_hits",
    "expert_misses",
    "bytes_read",
    "io_wait_seconds",
    "peak_rss_bytes",
    "cache_budget_bytes",
    "cache_peak_bytes",
)


def answer_figures(stats: GenerationStats) -> dict:
    """The "outlier" object of a usage chunk; figures the engine does not know are left out."""
    return {name: value for name in ANSWER_FIGURES if (value := getattr(stats, name)) is not None}


def openai_call(call: ToolCall) -> dict:
    return {"id": call.id, "type": "function", "function": {"name": call.name, "arguments": call.arguments}}


class ChatFormat:
    """Shapes of /v1/chat/completions."""

    def __init__(self, model: str) -> None:
        self.id = f"chatcmpl-{uuid.uuid4().hex}"
        self.created = int(time.time())
        self.model = model

    def _head(self, kind: str) -> dict:
        return {"id": self.id, "object": kind, "created": self.created, "model": self.model}

    def whole(self, text: str, thinking: str, finish: Finish, calls: Sequence[ToolCall] = ()) -> dict:
        message: dict = {"role": "assistant", "content": text}
        if thinking:
            message["reasoning_content"] = thinking
        if calls:  # outlier_tui.server.tools
            message["content"] = text or None
            message["tool_calls"] = [openai_call(call) for call in calls]
        choice = {"index": 0, "message": message, "finish_reason": finish.reason, "logprobs": None}
        return {**self._head("chat.completion"), "choices": [choice], "usage": usage(finish.stats)}

    def chunk(self, delta: dict, finish_reason: str | None = None) -> dict:
        choice = {"index": 0, "delta": delta, "finish_reason": finish_reason, "logprobs": None}
        return {**self._head("chat.completion.chunk"), "choices": [choice]}

    def first(self) -> dict | None:
        """The opening chunk of a stream, if the format has one."""
        return self.chunk({"role": "assistant", "content": ""})

    def piece(self, text: str) -> dict:
        return self.chunk({"content": text})

    def thinking(self, text: str) -> dict:
        return self.chunk({"reasoning_content": text})

    def tool_call(self, call: ToolCall, index: int) -> dict:
        return self.chunk({"tool_calls": [{"index": index, **openai_call(call)}]})

    def last(self, finish: Finish) -> dict:
        return self.chunk({}, finish.reason)

    def usage_chunk(self, finish: Finish) -> dict:
        return {
            **self._head("chat.completion.chunk"),
            "choices": [],
            "usage": usage(finish.stats),
            "outlier": answer_figures(finish.stats),
        }


class TextFormat(ChatFormat):
    """Shapes of /v1/completions (the legacy text API)."""

    def __init__(self, model: str) -> None:
        super().__init__(model)
        self.id = f"cmpl-{uuid.uuid4().hex}"

    def whole(self, text: str, thinking: str, finish: Finish, calls: Sequence[ToolCall] = ()) -> dict:
        choice = {"index": 0, "text": text, "finish_reason": finish.reason, "logprobs": None}
        if thinking:
            choice["reasoning_content"] = thinking
        return {**self._head("text_completion"), "choices": [choice], "usage": usage(finish.stats)}

    def _text_chunk(self, text: str, finish_reason: str | None) -> dict:
        choice = {"index": 0, "text": text, "finish_reason": finish_reason, "logprobs": None}
        return {**self._head("text_completion"), "choices": [choice]}

    def first(self) -> dict | None:
        return None

    def piece(self, text: str) -> dict:
        return self._text_chunk(text, None)

    def thinking(self, text: str) -> dict:
        return {
            **self._text_chunk("", None),
            "choices": [{"index": 0, "text": "", "reasoning_content": text, "finish_reason": None, "logprobs": None}],
        }

    def last(self, finish: Finish) -> dict:
        return self._text_chunk("", finish.reason)

    def usage_chunk(self, finish: Finish) -> dict:
        return {
            **self._head("text_completion"),
            "choices": [],
            "usage": usage(finish.stats),
            "outlier": answer_figures(finish.stats),
        }
