"""The engine's public contract: what a UI sends in and what it gets back.

Everything here is plain data (no MLX objects), so UIs, tests and fake
engines can use it without importing MLX.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field
from enum import Enum
from typing import Protocol, TypedDict

import numpy as np


class _Turn(TypedDict):
    role: str  # "system" | "user" | "assistant" | "tool"
    content: str


class Message(_Turn, total=False):
    """One chat message as chat templates take it."""

    reasoning_content: str  # an earlier answer's thinking, for templates that keep it
    # Tool calls an assistant message made, as chat templates take them:
    # [{"id", "type": "function", "function": {"name", "arguments": {...}}}]
    tool_calls: list[dict]
    tool_call_id: str  # a "tool" message: the call it answers
    name: str  # a "tool" message: the tool's name (templates that render it)


@dataclass(frozen=True)
class GenerationParams:
    max_tokens: int = 512
    temperature: float = 0.0
    top_p: float = 1.0
    seed: int | None = None
    # False: the last user message's content is fed to the model verbatim
    # (no chat template, no conversation reuse).
    chat_template: bool = True
    # Passed to the chat template as `enable_thinking` when not None (only
    # templates that take it change; ModelInfo.template_takes_enable_thinking).
    enable_thinking: bool | None = None
    # Whose prompt caches a request may reuse: "" for this machine's chats; a server passes
    # one scope per API key, so one client cannot reuse (or time) another's prefix.
    cache_scope: str = ""
    # Tools the chat template renders into the prompt (OpenAI's
    # [{"type": "function", "function": {"name", "description", "parameters"}}]); () for none.
    tools: tuple[dict, ...] = field(default=(), hash=False)


@dataclass(frozen=True)
class ModelInfo:
    path: str
    model_type: str
    num_layers: int  # all decoder layers
    moe_layers: tuple[int, ...]  # decoder-layer index of every streamed MoE layer
    num_experts: int
    top_k: int
    expert_bytes: int  # bytes of one expert in memory (all projections); the largest shape's
    total_expert_bytes: int  # every streamed expert of the model, in memory
    resident_bytes: int  # backbone kept in memory (everything but streamed experts)
    cache_budget_bytes: int
    cache_slots: int  # all slot pools together
    min_cache_bytes: int = 0  # the smallest legal budget: one layer's top-k in every pool
    expert_bytes_by_shape: tuple[int, ...] = ()  # one expert in memory, per slot pool
    notice: str = ""  # one line for the user (e.g. layers kept fully resident), or ""
    # Thinking, as the tokenizer and chat template say (engine.reasoning):
    think_start: str | None = None  # e.g. "<think>"; None: the model does not think
    think_end: str | None = None
    template_takes_enable_thinking: bool = False  # thinking can be switched off and on
    template_keeps_thinking: bool = False  # earlier answers' thinking goes back in the prompt
    context_length: int = 0  # tokens the model can attend to (0: the checkpoint does not say)
    # Tool calls, as the tokenizer says (engine.tool_parsers): the mlx-lm parser module that
    # reads the model's tool calls ("json_tools", "qwen3_coder", ...), or None: no tool calling.
    tool_parser: str | None = None
    # The model writes gpt-oss harmony channels (engine.harmony): analysis is thinking,
    # final the answer, commentary to a recipient a tool call (streamed in json_tools form).
    harmony: bool = False
    compute_dtype: str = ""  # the float dtype most weights compute in: float32, bfloat16, float16
    page_cache: str = ""  # whether expert reads go through the OS page cache, and why (engine.page_cache)


@dataclass(frozen=True)
class GenerationStats:
    tokens: tuple[int, ...]
    prompt_tokens: int  # tokens prefilled for this request (after KV reuse)
    generation_tokens: int
    prompt_tps: float
    generation_tps: float
    time_to_first_token: float
    # None: unknown (a remote server that does not report them, engine.remote); never 0 for unknown
    peak_rss_bytes: int | None
    cache_budget_bytes: int | None
    cache_peak_bytes: int | None
    expert_hits: int | None
    expert_misses: int | None
    bytes_read: int | None
    io_wait_seconds: float | None
    prefetch_issued: int = 0
    prefetch_used: int = 0
    cached_tokens: int = 0  # prompt tokens reused from the KV cache (not prefilled again)
    cache_source: str = ""  # where they came from: "memory", "disk" (an earlier run) or ""
    # expert bytes read while prefilling / bytes of the distinct experts the prompt routed to
    # (1.0: each read once; None: no expert was routed, e.g. all resident)
    prompt_read_ratio: float | None = None
    prompt_bytes_read: int = 0
    prompt_expert_bytes: int = 0
    layer_major: bool = False  # the prompt ran layer by layer over several chunks (engine.prefill)
    kv_cache_bytes: int = 0  # every prompt cache held after this request
    notice: str = ""  # one line for the user (e.g. a saved prompt cache that could not be used), or ""


# ---- events streamed back for one generate request -------------------------


@dataclass(frozen=True)
class TextDelta:
    text: str
    token: int
    kind: str = "answer"  # or "thinking" (engine.reasoning splits them)


@dataclass(frozen=True)
class GenerationDone:
    stats: GenerationStats
    cancelled: bool = False


@dataclass(frozen=True)
class GenerationFailed:
    message: str  # one line, says what to do
    # The OutlierError subclass behind it ("PromptTooLongError", ...), or "InternalError":
    # lets a server answer the client's mistakes (400) apart from its own (500).
    error_type: str = "InternalError"


GenerationEvent = TextDelta | GenerationDone | GenerationFailed


@dataclass(frozen=True)
class LoadProgress:
    """How far a model load or demo build is: the one progress event every UI draws."""

    fraction: float  # 0..1
    message: str


ProgressFn = Callable[[LoadProgress], None]


# ---- telemetry -------------------------------------------------------------


class EngineState(str, Enum):
    """What the engine is doing; a str, so it goes on the wire (JSON) as its value."""

    EMPTY = "empty"  # no model loaded
    LOADING = "loading"
    IDLE = "idle"  # a model is loaded, no request runs
    GENERATING = "generating"
    ERROR = "error"  # the last load failed (TelemetrySnapshot.error says why)

    def __str__(self) -> str:
        return self.value


@dataclass(frozen=True)
class TelemetrySnapshot:
    """A consistent copy of the engine's counters, cheap to poll at ~10 Hz."""

    state: EngineState
    step: int  # forward passes so far (each prefill chunk or decode token is one)
    moe_layers: tuple[int, ...] = ()
    # Arrays shaped [len(moe_layers), num_experts]
    hits: np.ndarray = field(default_factory=lambda: np.zeros((0, 0), np.int64))
    misses: np.ndarray = field(default_factory=lambda: np.zeros((0, 0), np.int64))
    resident: np.ndarray = field(default_factory=lambda: np.zeros((0, 0), bool))
    last_use_step: np.ndarray = field(default_factory=lambda: np.zeros((0, 0), np.int64))
    last_miss_step: np.ndarray = field(default_factory=lambda: np.zeros((0, 0), np.int64))
    bytes_read: int = 0
    reads: int = 0
    read_seconds: float = 0.0  # summed latency of individual reads
    io_wait_seconds: float = 0.0  # time the decoder waited on reads
    prefetch_issued: int = 0
    prefetch_used: int = 0
    prompt_tps: float = 0.0
    generation_tps: float = 0.0
    rss_bytes: int = 0
    peak_rss_bytes: int = 0
    mlx_active_bytes: int = 0
    cache_bytes: int = 0
    cache_peak_bytes: int = 0
    cache_budget_bytes: int = 0
    # why the budget is below the load's: free memory ran low and the cache shrank ("": it is not)
    budget_notice: str = ""
    resident_weight_bytes: int = 0
    kv_cache_bytes: int = 0  # prompt caches of every chat and client (engine.prompt_cache)
    kv_budget_bytes: int = 0
    kv_entries: int = 0
    model: ModelInfo | None = None
    error: str | None = None
    # Set when there is no expert telemetry to show and why (a remote server that sends none).
    telemetry_note: str | None = None


class GenerationStream(Protocol):
    """Events of one request, in order; the last is GenerationDone or GenerationFailed."""

    def __iter__(self): ...  # blocking iterator of GenerationEvent

    def __aiter__(self): ...  # asyncio iterator of GenerationEvent

    def listen(self, listener) -> None: ...  # push each event to listener(event) instead (servers)


class EngineClient(Protocol):
    """What a UI needs from an engine; the real one is engine.Engine."""

    def load(
        self, model_dir: str, cache_bytes: int | None = None, on_progress: ProgressFn | None = None
    ) -> Future[ModelInfo]: ...

    def generate(
        self, messages: Sequence[Message], params: GenerationParams = GenerationParams()
    ) -> GenerationStream: ...

    def cancel(self) -> None: ...  # stops the running request between tokens

    def reset(self) -> Future[None]: ...  # forget every prompt cache held in memory

    def save_prompt_caches(self) -> Future[int]: ...  # keep chats' KV caches for the next run

    def snapshot(self) -> TelemetrySnapshot: ...

    def close(self) -> None: ...
