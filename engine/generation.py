"""Turn chat messages into tokens with one model: prefill, decode, stream.

Each request starts from the longest prefix of its prompt that any earlier
request left in the prompt caches (engine.prompt_cache), so a follow-up, a
second chat or a second client prefills only what is new; a hybrid model,
whose cache cannot be trimmed back, restores from a copy taken at the last
message boundary. The prompt itself runs layer by layer over its chunks
(engine.prefill), so it reads each expert once.
"""

from __future__ import annotations

import math
import threading
import time
import typing
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import mlx.core as mx
from mlx_lm.models.cache import make_prompt_cache
from mlx_lm.sample_utils import make_sampler

from engine.api import GenerationParams, GenerationStats, Message
from engine.errors import PromptTooLongError, RequestError
from engine.harmony import answer_splitter
from engine.loader import LoadedModel
from engine.prefill import CHUNK_BY_CHUNK_ONLY, PREFILL_STEP, PrefillResult, activation_bytes, prefill
from engine.prompt_cache import (
    AFTER_ANSWER,
    AT_MESSAGE_BOUNDARY,
    PromptCacheStore,
    cache_nbytes,
    common_prefix,
    quantize_kv,
)
from engine.telemetry import peak_rss_bytes

__all__ = ["PREFILL_STEP", "PromptCacheStore", "generate"]


def prompt_text(loaded: LoadedModel, messages: Sequence[Message], params: GenerationParams) -> str:
    """The prompt as text: the chat template applied (with `enable_thinking` when
    the caller chose), or the last message verbatim when templating is off."""
    tok = loaded.tokenizer
    if params.chat_template and getattr(tok, "has_chat_template", False):
        switches = _template_switches(params)
        return tok.apply_chat_template(list(messages), add_generation_prompt=True, tokenize=False, **switches)
    return messages[-1]["content"] if messages else ""


def _template_switches(params: GenerationParams) -> dict:
    """The chat template's keyword arguments besides the messages."""
    switches: dict = {} if params.enable_thinking is None else {"enable_thinking": params.enable_thinking}
    if params.tools:
        switches["tools"] = list(params.tools)
    return switches


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


def message_boundary(loaded: LoadedModel, messages: Sequence[Message], params: GenerationParams, tokens) -> int:
    """Where the last user (or tool-result) message ends in the prompt (its generation prompt,
    and any thinking opener, follow): the next turn's prompt shares at least this prefix."""
    tok = loaded.tokenizer
    if not (params.chat_template and messages and messages[-1]["role"] in ("user", "tool")):
        return 0
    if not getattr(tok, "has_chat_template", False):
        return 0
    switches = _template_switches(params)
    try:
        text = tok.apply_chat_template(list(messages), add_generation_prompt=False, tokenize=False, **switches)
    except Exception:  # a template that insists on a generation prompt: no boundary copy
        return 0
    return common_prefix(encode_prompt(loaded, text), tokens)


def generate(
    loaded: LoadedModel,
    store: PromptCacheStore,
    messages: Sequence[Message],
    params: GenerationParams,
    cancel: threading.Event,
    emit: Callable[[str, int, str], None],
) -> tuple[GenerationStats, bool]:
    """Run one request; returns (stats, cancelled). `emit(text, token, kind)` gets the text
    split into thinking and answer (engine.reasoning). The request works on its own copy of
    a cached prefix and puts its cache back when it ends (also when cancelled while decoding);
    on an exception it puts nothing back, so a half-run forward is never reused."""
    model, tok, telemetry, streamer = loaded.model, loaded.tokenizer, loaded.telemetry, loaded.streamer
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

    if loaded.memory_guard is not None:
        loaded.memory_guard.check()
    start = time.perf_counter()
    prompt = _prefill(loaded, store, messages, params, tokens, cancel)
    cache, skip, result = prompt.cache, prompt.skip, prompt.result
    prompt_time = time.perf_counter() - start
    prompt_tps = (len(tokens) - skip) / prompt_time if prompt_time > 0 else 0.0
    telemetry.record_speed(prompt_tps=prompt_tps)
    prompt_expert_bytes = loaded.expert_disk_bytes(result.experts)
    logits = result.logits
    cancelled = logits is None
    cache_tokens = list(tokens)

    detok = tok.detokenizer
    detok.reset()
    eos = set(tok.eos_token_ids)
    generated: list[int] = []
    first_token_at = time.perf_counter()
    while not cancelled:
        assert logits is not None
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
        logits = model(mx.array([[token_id]]), cache=cache)[:, -1, :]
        cache_tokens.append(token_id)
        mx.eval(logits)
        if streamer is not None:
            streamer.after_decode_token(time.perf_counter() - step_start)
        if loaded.memory_guard is not None:
            loaded.memory_guard.check()
        elapsed = time.perf_counter() - first_token_at
        if elapsed > 0:
            telemetry.record_speed(generation_tps=(len(generated)) / elapsed)
    if logits is not None:  # a prefill cut short leaves a half-filled cache: never kept
        store.put(params.cache_scope, cache_tokens, cache, AFTER_ANSWER)
    store.active_bytes = 0
    detok.finalize()
    last_token = generated[-1] if generated else -1
    emit_parts(splitter.feed(detok.last_segment) + splitter.finish(), last_token)
    decode_time = time.perf_counter() - first_token_at
    generation_tps = (len(generated) - 1) / decode_time if len(generated) > 1 and decode_time > 0 else 0.0
    telemetry.record_speed(generation_tps=generation_tps)
    telemetry.record_kv(store.nbytes, store.max_bytes, len(store.memory))
    after = telemetry.totals()
    stats = GenerationStats(
        tokens=tuple(generated),
        prompt_tokens=len(tokens) - skip,
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
        cache_source=prompt.source,
        prompt_bytes_read=prompt.bytes_read,
        prompt_expert_bytes=prompt_expert_bytes,
        prompt_read_ratio=prompt.bytes_read / prompt_expert_bytes if prompt_expert_bytes else None,
        layer_major=result.layer_major,
        kv_cache_bytes=store.nbytes,
        notice=store.take_notices() or _too_big(cache, store),
    )
    return stats, cancelled


def _too_big(cache: list, store: PromptCacheStore) -> str:
    """A chat whose KV cache alone exceeds the budget is prefilled whole every turn: say so."""
    size = cache_nbytes(cache)
    if size <= store.max_bytes:
        return ""
    return (
        f"This chat's KV cache ({size / 2**20:.0f} MiB) is larger than the KV budget "
        f"({store.max_bytes / 2**20:.0f} MiB), so it is not kept: raise --kv-cache-mb or use --kv-bits 8."
    )


@dataclass
class _Prompt:
    """A prompt's prefill: the request's cache, how many tokens came from a prompt cache, from
    where, what the prefill gave, and the expert bytes it read."""

    cache: list
    skip: int
    source: str
    result: PrefillResult
    bytes_read: int


def _prefill(
    loaded: LoadedModel,
    store: PromptCacheStore,
    messages: Sequence[Message],
    params: GenerationParams,
    tokens: list[int],
    cancel: threading.Event,
) -> _Prompt:
    """Take the longest cached prefix, prefill the rest (layer by layer), keep a message-boundary
    copy where the cache cannot be trimmed back, and count it all in the KV budget."""
    scope, streamer, telemetry = params.cache_scope, loaded.streamer, loaded.telemetry
    cache, skip, source = store.take(scope, tokens)
    if cache is None:
        cache, skip = make_prompt_cache(loaded.model), 0
    boundary = 0 if loaded.trimmable_cache else message_boundary(loaded, messages, params, tokens)
    snapshot_at = boundary if skip < boundary < len(tokens) else None
    # this request's copy and the hidden states a layer-major prefill holds share the budget
    held = min(activation_bytes(len(tokens) - skip, loaded.hidden_size), store.max_bytes // 2)
    store.active_bytes = cache_nbytes(cache) + held
    store.memory.make_room(store.active_bytes)
    if streamer is not None:  # a long prompt stops at its next MoE layer, not minutes later
        streamer.stop_prefill = cancel.is_set
    reads_before = telemetry.totals()["bytes_read"]
    try:
        result = prefill(
            loaded.model,
            streamer,
            cache,
            tokens,
            skip,
            cancel=cancel,
            begin_step=telemetry.begin_step,
            snapshot_at=snapshot_at,
            moe_layers=loaded.info.moe_layers,
            hidden_size=loaded.hidden_size,
            max_activation_bytes=store.max_bytes // 2,
            layer_major=loaded.info.model_type not in CHUNK_BY_CHUNK_ONLY,
        )
    finally:
        if streamer is not None:
            streamer.stop_prefill = None
    bytes_read = telemetry.totals()["bytes_read"] - reads_before
    if result.logits is not None and store.kv_bits:  # mlx-lm's quantized KV cache from here on
        quantize_kv(cache, store.kv_bits)
    store.active_bytes = cache_nbytes(cache)
    store.memory.make_room(store.active_bytes)
    if result.snapshot is not None and snapshot_at is not None:
        store.put(scope, tokens[:snapshot_at], result.snapshot, AT_MESSAGE_BOUNDARY)
    return _Prompt(cache, skip, source if skip else "", result, bytes_read)
