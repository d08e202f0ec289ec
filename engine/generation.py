"""Turn chat messages into tokens with one model: prefill, decode, stream.

A Conversation owns the KV cache of one chat and the exact tokens it holds,
so a follow-up prefills only what is new (the longest common prefix is kept;
a cache that cannot be trimmed is rebuilt).
"""

from __future__ import annotations

import math
import threading
import time
import typing
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import mlx.core as mx
from mlx_lm.models.cache import can_trim_prompt_cache, make_prompt_cache, trim_prompt_cache
from mlx_lm.sample_utils import make_sampler

from engine.api import GenerationParams, GenerationStats, Message
from engine.errors import PromptTooLongError, RequestError
from engine.harmony import answer_splitter
from engine.loader import LoadedModel
from engine.streamed_moe import PrefillCancelled
from engine.telemetry import peak_rss_bytes

# mlx-lm's own prefill_step_size. Each chunk is a forward through every layer, so a chunk
# boundary makes a prompt read again every expert evicted since that layer's first chunk:
# a 532-token prompt at a 25% budget read 2043 experts in 512-token chunks, 1402 in one.
PREFILL_STEP = 2048


@dataclass
class Conversation:
    cache: list | None = None
    tokens: list[int] = field(default_factory=list)  # exactly what `cache` has seen

    def clear(self) -> None:
        self.cache = None
        self.tokens = []


def prompt_text(loaded: LoadedModel, messages: Sequence[Message], params: GenerationParams) -> str:
    """The prompt as text: the chat template applied (with `enable_thinking` when
    the caller chose), or the last message verbatim when templating is off."""
    tok = loaded.tokenizer
    if params.chat_template and getattr(tok, "has_chat_template", False):
        switches: dict = {} if params.enable_thinking is None else {"enable_thinking": params.enable_thinking}
        if params.tools:
            switches["tools"] = list(params.tools)
        return tok.apply_chat_template(list(messages), add_generation_prompt=True, tokenize=False, **switches)
    return messages[-1]["content"] if messages else ""


def encode_prompt(loaded: LoadedModel, text: str) -> list[int]:
    tok = loaded.tokenizer
    # A prompt beyond the context is refused with both numbers (answer_room); silence
    # transformers' own multi-line warning about it, which it prints once per tokenizer.
    warned = getattr(tok, "deprecation_warnings", None)
    if isinstance(warned, dict):
        warned["sequence-length-is-longer-than-the-specified-maximum"] = True
    bos = getattr(tok, "bos_token", None)
    return list(tok.encode(text, add_special_tokens=bos is None or not text.startswith(bos)))


def check_params(params: GenerationParams) -> None:
    """Refuse settings no sampler can honour (UIs check their flags too; this guards
    every caller of the engine, e.g. a server)."""
    if isinstance(params.max_tokens, bool) or not isinstance(params.max_tokens, int) or params.max_tokens < 1:
        raise RequestError(f"max_tokens must be a whole number of at least 1, got {params.max_tokens!r}.")
    if not _finite(params.temperature) or params.temperature < 0:
        raise RequestError(f"temperature must be a finite number of at least 0, got {params.temperature!r}.")
    if not _finite(params.top_p) or not 0 < params.top_p <= 1:
        raise RequestError(f"top_p must be more than 0 and at most 1, got {params.top_p!r}.")
    seed = params.seed
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed < 2**64):
        raise RequestError(f"seed must be a whole number from 0 to {2**64 - 1}, got {seed!r}.")


def _finite(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def answer_room(prompt_length: int, params: GenerationParams, context: int) -> int:
    """How many tokens the answer may have: max_tokens, cut at the context limit.
    An empty prompt or one that fills the context is refused with both numbers."""
    if prompt_length == 0:
        raise RequestError("The prompt is empty (0 tokens): type some text to answer.")
    if not context:
        return params.max_tokens
    if prompt_length >= context:
        raise PromptTooLongError(
            f"The prompt is {prompt_length} tokens but the model's context holds {context}: "
            "shorten it or start a new chat."
        )
    return min(params.max_tokens, context - prompt_length)


def _reuse_prefix(conv: Conversation, model, tokens: list[int]) -> int:
    """Keep the cached prefix shared with `tokens`; return how many tokens to skip."""
    common = 0
    for a, b in zip(conv.tokens, tokens):
        if a != b:
            break
        common += 1
    common = min(common, len(tokens) - 1)  # always prefill at least one token for logits
    if conv.cache is None or common == 0:
        conv.cache, conv.tokens = make_prompt_cache(model), []
        return 0
    drop = len(conv.tokens) - common
    if drop:
        if not can_trim_prompt_cache(conv.cache):
            conv.cache, conv.tokens = make_prompt_cache(model), []
            return 0
        trim_prompt_cache(conv.cache, drop)
        del conv.tokens[common:]
    return common


def generate(
    loaded: LoadedModel,
    conv: Conversation,
    messages: Sequence[Message],
    params: GenerationParams,
    cancel: threading.Event,
    emit: Callable[[str, int, str], None],
) -> tuple[GenerationStats, bool]:
    """Run one request; returns (stats, cancelled). `emit(text, token, kind)` gets
    the text split into thinking and answer (engine.reasoning). On any exception
    the caller must clear `conv`: a forward that failed half-way left the KV
    cache inconsistent."""
    model, tok, telemetry = loaded.model, loaded.tokenizer, loaded.telemetry
    check_params(params)
    if loaded.reader is not None:
        loaded.reader.check_files()
    before = telemetry.totals()
    text = prompt_text(loaded, messages, params)
    tokens = encode_prompt(loaded, text)
    max_tokens = answer_room(len(tokens), params, loaded.info.context_length)
    info = loaded.info
    splitter = answer_splitter(info.think_start, info.think_end, info.harmony, text, params.chat_template)

    def emit_parts(parts: list[tuple[str, str]], token_id: int) -> None:
        for kind, part in parts:
            emit(part, token_id, kind)

    if params.seed is not None:
        mx.random.seed(params.seed)
    sampler = make_sampler(params.temperature, params.top_p if params.top_p < 1.0 else 0.0)

    start = time.perf_counter()
    skip = _reuse_prefix(conv, model, tokens)
    todo = tokens[skip:]
    logits = None
    cancelled = False
    streamer = loaded.streamer
    if streamer is not None:  # a long chunk stops at its next MoE layer, not minutes later
        streamer.stop_prefill = cancel.is_set
    try:
        for i in range(0, len(todo), PREFILL_STEP):
            if cancel.is_set():  # between chunks the KV cache and conv.tokens agree
                cancelled = True
                break
            chunk = todo[i : i + PREFILL_STEP]
            telemetry.begin_step()
            try:
                logits = model(mx.array(chunk)[None], cache=conv.cache)[:, -1, :]
                mx.eval(logits)
            except PrefillCancelled:
                conv.clear()  # layers before the stop hold this chunk in their KV cache, later ones not
                cancelled = True
                break
            conv.tokens.extend(chunk)
    finally:
        if streamer is not None:
            streamer.stop_prefill = None
    prompt_time = time.perf_counter() - start
    prompt_tps = len(todo) / prompt_time if prompt_time > 0 else 0.0
    telemetry.record_speed(prompt_tps=prompt_tps)

    detok = tok.detokenizer
    detok.reset()
    eos = set(tok.eos_token_ids)
    generated: list[int] = []
    first_token_at = time.perf_counter()
    while not cancelled:
        assert logits is not None  # the prefill always runs at least the last prompt token
        token = sampler(logits - mx.logsumexp(logits, axis=-1, keepdims=True))
        token_id = typing.cast(int, token.item())
        if not generated:
            first_token_at = time.perf_counter()
        if token_id in eos:
            break
        generated.append(token_id)
        detok.add_token(token_id)
        if piece := detok.last_segment:
            emit_parts(splitter.feed(piece), token_id)
        if len(generated) >= max_tokens:
            break
        if cancel.is_set():
            cancelled = True
            break
        telemetry.begin_step()
        step_start = time.perf_counter()
        logits = model(mx.array([[token_id]]), cache=conv.cache)[:, -1, :]
        conv.tokens.append(token_id)
        mx.eval(logits)
        if streamer is not None:
            streamer.after_decode_token(time.perf_counter() - step_start)
        elapsed = time.perf_counter() - first_token_at
        if elapsed > 0:
            telemetry.record_speed(generation_tps=(len(generated)) / elapsed)
    detok.finalize()
    last_token = generated[-1] if generated else -1
    emit_parts(splitter.feed(detok.last_segment) + splitter.finish(), last_token)
    decode_time = time.perf_counter() - first_token_at
    generation_tps = (len(generated) - 1) / decode_time if len(generated) > 1 and decode_time > 0 else 0.0
    telemetry.record_speed(generation_tps=generation_tps)
    after = telemetry.totals()
    stats = GenerationStats(
        tokens=tuple(generated),
        prompt_tokens=len(todo),
        generation_tokens=len(generated),
        prompt_tps=prompt_tps,
        generation_tps=generation_tps,
        time_to_first_token=first_token_at - start,
        peak_rss_bytes=peak_rss_bytes(),
        cache_budget_bytes=loaded.info.cache_budget_bytes,
        cache_peak_bytes=after["cache_peak_bytes"],
        expert_hits=after["hits"] - before["hits"],
        expert_misses=after["misses"] - before["misses"],
        bytes_read=after["bytes_read"] - before["bytes_read"],
        io_wait_seconds=after["io_wait_seconds"] - before["io_wait_seconds"],
        prefetch_issued=after["prefetch_issued"] - before["prefetch_issued"],
        prefetch_used=after["prefetch_used"] - before["prefetch_used"],
        cached_tokens=skip,
    )
    return stats, cancelled
