"""A scripted engine with the real Engine's interface and no MLX.

UIs use it in tests (and `--fake-engine` demos of the UI) so that the chat,
heatmap and memory panes can be driven deterministically: answers come from
a script, telemetry from a small simulated expert cache.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future

import numpy as np

from engine.api import (
    EngineState,
    GenerationDone,
    GenerationFailed,
    GenerationParams,
    GenerationStats,
    LoadProgress,
    Message,
    ModelInfo,
    TelemetrySnapshot,
    TextDelta,
)
from engine.errors import EngineStateError
from engine.events import EventStream
from engine.harmony import HarmonySplitter, looks_like_harmony
from engine.reasoning import THINKING, ReasoningSplitter, ThinkMarkers

# The fake "model" thinks like Qwen3: `<think>...</think>` in its answer text.
FAKE_MARKERS = ThinkMarkers("<think>", "</think>")
TOOL_PARSER = "json_tools"  # and calls tools like Qwen3: `<tool_call>{json}</tool_call>`


def _prompt_words(messages: Sequence[Message], params: GenerationParams) -> int:
    words = sum(len(str(m.get("content") or "").split()) for m in messages)
    words += sum(len(str(m.get("tool_calls") or "").split()) for m in messages)
    return words + sum(len(json.dumps(t).split()) for t in params.tools)


def default_answer(messages: Sequence[Message]) -> str:
    last = messages[-1]["content"] if messages else ""
    return (
        f"You said: {last}\n\nHere is some code:\n\n```python\ndef reverse(s: str) -> str:\n    return s[::-1]\n```\n"
    )


class FakeEngine:
    """Streams scripted answers word by word and simulates expert-cache telemetry.

    script: a function from the chat messages to the answer text, or a list of
    answers used in turn; `<think>...</think>` in an answer streams as thinking
    (dropped when the request says enable_thinking=False). token_delay: seconds
    between pieces. fail_with: if set, load() fails with this message.
    fail_generate_after: emit this many pieces, then fail with a read error.
    tool_parser: the mlx-lm tool parser the fake "model" writes tool calls for
    (json_tools: `<tool_call>{"name": …, "arguments": …}</tool_call>`); an answer
    written in gpt-oss harmony channels streams split like gpt-oss's (engine.harmony).
    """

    def __init__(
        self,
        script: Callable[[Sequence[Message]], str] | list[str] | None = None,
        token_delay: float = 0.0,
        num_layers: int = 4,
        num_experts: int = 16,
        top_k: int = 2,
        cache_slots: int = 8,
        fail_with: str | None = None,
        fail_generate_after: int | None = None,
        tool_parser: str | None = TOOL_PARSER,
    ) -> None:
        self._script = script or default_answer
        self._answers_used = 0
        self.token_delay = token_delay
        self.fail_with = fail_with
        self.fail_generate_after = fail_generate_after
        self.tool_parser = tool_parser
        self.requests: list[tuple[list[Message], GenerationParams]] = []
        self.resets = 0
        self.saves = 0  # save_prompt_caches calls (a chat left, the app quitting)
        self._cancel = threading.Event()
        self._lock = threading.Lock()
        self._top_k = top_k
        self._slots = cache_slots
        self._shape = (num_layers, num_experts)
        self._hits = np.zeros(self._shape, np.int64)
        self._misses = np.zeros(self._shape, np.int64)
        self._resident = np.zeros(self._shape, bool)
        self._last_use = np.zeros(self._shape, np.int64)
        self._last_miss = np.zeros(self._shape, np.int64)
        self._lru: list[tuple[int, int]] = []
        self._step = 0
        self._state = EngineState.EMPTY
        self._info: ModelInfo | None = None
        self._rng = np.random.default_rng(0)
        self._bytes_read = 0
        self.closed = False

    # ---- EngineClient ------------------------------------------------------

    def load(
        self, model_dir: str, cache_bytes: int | None = None, on_progress: Callable[[LoadProgress], None] | None = None
    ) -> Future[ModelInfo]:
        future: Future = Future()
        if on_progress:
            on_progress(LoadProgress(0.5, "reading checkpoint index"))
        if self.fail_with:
            self._state = EngineState.ERROR
            future.set_exception(RuntimeError(self.fail_with))
            return future
        layers, experts = self._shape
        self._info = ModelInfo(
            path=str(model_dir),
            model_type="fake",
            num_layers=layers,
            moe_layers=tuple(range(layers)),
            num_experts=experts,
            top_k=self._top_k,
            expert_bytes=1 << 20,
            total_expert_bytes=layers * experts << 20,
            resident_bytes=64 << 20,
            cache_budget_bytes=self._slots << 20,
            cache_slots=self._slots,
            think_start=FAKE_MARKERS.start,
            think_end=FAKE_MARKERS.end,
            template_takes_enable_thinking=True,
            tool_parser=self.tool_parser,
        )
        self._state = EngineState.IDLE
        if on_progress:
            on_progress(LoadProgress(1.0, "ready"))
        future.set_result(self._info)
        return future

    def generate(self, messages: Sequence[Message], params: GenerationParams = GenerationParams()) -> EventStream:
        self.requests.append(([m.copy() for m in messages], params))
        stream = EventStream()
        self._cancel.clear()
        threading.Thread(target=self._run, args=(list(messages), params, stream), daemon=True).start()
        return stream

    def count_tokens(self, messages: Sequence[Message], params: GenerationParams = GenerationParams()) -> int:
        """The fake's prompt length: words of every message and of the tools."""
        if self._info is None:
            raise EngineStateError("No model is loaded: load one first.")
        return _prompt_words(messages, params)

    def cancel(self) -> None:
        self._cancel.set()

    def reset(self) -> Future[None]:
        self.resets += 1
        future: Future = Future()
        future.set_result(None)
        return future

    def save_prompt_caches(self) -> Future[int]:
        self.saves += 1
        future: Future = Future()
        future.set_result(0)
        return future

    def snapshot(self) -> TelemetrySnapshot:
        with self._lock:
            return TelemetrySnapshot(
                state=self._state,
                step=self._step,
                moe_layers=self._info.moe_layers if self._info else (),
                hits=self._hits.copy(),
                misses=self._misses.copy(),
                resident=self._resident.copy(),
                last_use_step=self._last_use.copy(),
                last_miss_step=self._last_miss.copy(),
                bytes_read=self._bytes_read,
                reads=int(self._misses.sum()),
                rss_bytes=200 << 20,
                peak_rss_bytes=210 << 20,
                cache_bytes=int(self._resident.sum()) << 20,
                cache_peak_bytes=self._slots << 20,
                cache_budget_bytes=self._slots << 20,
                resident_weight_bytes=64 << 20,
                prompt_tps=100.0,
                generation_tps=20.0,
                model=self._info,
            )

    def close(self) -> None:
        self.closed = True
        self._cancel.set()

    # ---- simulation --------------------------------------------------------

    def _answer(self, messages: Sequence[Message]) -> str:
        if callable(self._script):
            return self._script(messages)
        answer = self._script[min(self._answers_used, len(self._script) - 1)]
        self._answers_used += 1
        return answer

    def _route_one_token(self) -> None:
        layers, experts = self._shape
        with self._lock:
            self._step += 1
            for layer in range(layers):
                for e in self._rng.choice(experts, self._top_k, replace=False):
                    key = (layer, int(e))
                    self._last_use[key] = self._step
                    if self._resident[key]:
                        self._hits[key] += 1
                        self._lru.remove(key)
                    else:
                        self._misses[key] += 1
                        self._last_miss[key] = self._step
                        self._bytes_read += 1 << 20
                        if len(self._lru) >= self._slots:
                            self._resident[self._lru.pop(0)] = False
                        self._resident[key] = True
                    self._lru.append(key)

    @staticmethod
    def _put_parts(stream: EventStream, parts, token: int, params: GenerationParams) -> None:
        for kind, text in parts:
            if kind == THINKING and params.enable_thinking is False:
                continue  # a model told not to think does not: the answer alone
            stream.put(TextDelta(text, token, kind))

    def _run(self, messages: list[Message], params: GenerationParams, stream: EventStream) -> None:
        if self._info is None:
            stream.put(GenerationFailed("No model is loaded: load one first."))
            return
        self._state = EngineState.GENERATING
        answer = self._answer(messages)
        pieces = answer.split(" ")
        pieces = [p + (" " if i < len(pieces) - 1 else "") for i, p in enumerate(pieces)]
        tokens: list[int] = []
        hits0, misses0 = int(self._hits.sum()), int(self._misses.sum())
        cancelled = False
        splitter = HarmonySplitter() if looks_like_harmony(answer) else ReasoningSplitter(FAKE_MARKERS)
        i = -1
        for i, piece in enumerate(pieces[: params.max_tokens]):
            if self._cancel.is_set():
                cancelled = True
                break
            if self.fail_generate_after is not None and i >= self.fail_generate_after:
                self._state = EngineState.IDLE
                stream.put(
                    GenerationFailed(
                        "Reading experts from the SSD failed: simulated I/O error. "
                        "Check the disk and send the message again."
                    )
                )
                return
            if self.token_delay:
                time.sleep(self.token_delay)
            self._route_one_token()
            tokens.append(i)
            self._put_parts(stream, splitter.feed(piece), i, params)
        self._put_parts(stream, splitter.finish(), i, params)
        self._state = EngineState.IDLE
        stats = GenerationStats(
            tokens=tuple(tokens),
            prompt_tokens=_prompt_words(messages, params),
            generation_tokens=len(tokens),
            prompt_tps=100.0,
            generation_tps=20.0,
            time_to_first_token=0.01,
            peak_rss_bytes=210 << 20,
            cache_budget_bytes=self._slots << 20,
            cache_peak_bytes=self._slots << 20,
            expert_hits=int(self._hits.sum()) - hits0,
            expert_misses=int(self._misses.sum()) - misses0,
            bytes_read=self._bytes_read,
            io_wait_seconds=0.0,
        )
        stream.put(GenerationDone(stats, cancelled=cancelled))
