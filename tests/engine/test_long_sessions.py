"""Long prompts and long sessions: a prompt reads each expert once (layer-major prefill), and
no turn prefills again what an earlier one left in the prompt caches, hybrid models included."""

from __future__ import annotations

import threading
from pathlib import Path

import mlx.core as mx
import pytest
from checkpoints import resident_oracle
from mlx_lm.models.cache import make_prompt_cache
from thinking_checkpoint import add_think_tokens

from engine import prefill as prefill_module
from engine.api import GenerationParams
from engine.generation import PromptCacheStore, encode_prompt, generate, message_boundary, prompt_text
from engine.loader import LoadOptions, load_streamed_model
from engine.prompt_cache import PromptCacheFiles
from engine.prompt_cache import PromptCacheStore as Store

STEP = 16  # tiny chunks: a 90-token prompt is six of them
PROMPT = "The quick brown fox jumps over the lazy dog. " * 2
RAW = GenerationParams(max_tokens=4, chat_template=False)


def _quarter(path: Path) -> int:
    probe = load_streamed_model(path)
    info = probe.info
    probe.close()
    return max(info.min_cache_bytes, info.total_expert_bytes // 4)


def _run(loaded, store, messages, params=RAW, cancel=None):
    stats, cancelled = generate(loaded, store, messages, params, cancel or threading.Event(), lambda *a: None)
    assert not cancelled
    return stats


def _prefill(loaded, ids: list[int], streamer="engine's", **options) -> prefill_module.PrefillResult:
    """engine.prefill of `ids` into a fresh cache, by the loaded model's streamer by default."""
    return prefill_module.prefill(
        loaded.model,
        loaded.streamer if streamer == "engine's" else streamer,
        make_prompt_cache(loaded.model),
        ids,
        0,
        cancel=threading.Event(),
        begin_step=lambda: None,
        **options,
    )


def _resident_logits(path: Path, ids: list[int], step: int) -> mx.array:
    model, _ = resident_oracle(path)
    cache = make_prompt_cache(model)
    for start in range(0, len(ids), step):
        logits = model(mx.array([ids[start : start + step]]), cache=cache)[:, -1, :]
    mx.eval(logits)
    return logits


@pytest.mark.parametrize("arch", ["mixtral", "qwen3_next"])  # the demo's family and a hybrid
def test_a_long_prompt_reads_each_expert_once_with_the_resident_logits(checkpoint_factory, monkeypatch, arch):
    monkeypatch.setattr(prefill_module, "PREFILL_STEP", STEP)
    path = checkpoint_factory(arch)
    loaded = load_streamed_model(path, cache_bytes=_quarter(path))
    try:
        ids = loaded.tokenizer.encode(PROMPT)
        assert len(ids) >= 3 * STEP
        stats = _run(loaded, PromptCacheStore(), [{"role": "user", "content": PROMPT}])
        assert stats.layer_major and stats.prompt_read_ratio is not None
        assert stats.prompt_read_ratio <= 1.05

        two_chunks = prefill_module.activation_bytes(2 * STEP, loaded.hidden_size)
        waves = _prefill(loaded, ids, hidden_size=loaded.hidden_size, max_activation_bytes=two_chunks)
        assert waves.waves == 3 and waves.logits is not None  # six chunks, two at a time
        before = loaded.telemetry.totals()["bytes_read"]
        layered = _prefill(loaded, ids).logits
        between = loaded.telemetry.totals()["bytes_read"]
        chunked = _prefill(loaded, ids, streamer=None).logits  # no streamer: each chunk through every layer
        after = loaded.telemetry.totals()["bytes_read"]
        expected = _resident_logits(path, ids, STEP)
        assert mx.array_equal(layered, expected) and mx.array_equal(chunked, expected)
        assert mx.array_equal(waves.logits, expected)
        assert after - between > 2 * (between - before)  # chunk by chunk re-reads evicted experts
    finally:
        loaded.close()


def test_a_layer_over_budget_serves_its_experts_in_groups_over_the_whole_prompt(checkpoint_factory, monkeypatch):
    """At the minimum budget a layer's experts do not fit: groups of them run over every chunk."""
    monkeypatch.setattr(prefill_module, "PREFILL_STEP", STEP)
    path = checkpoint_factory("qwen3_moe")
    probe = load_streamed_model(path)
    minimum = probe.info.min_cache_bytes
    probe.close()
    loaded = load_streamed_model(path, minimum, LoadOptions(prefetch=True))
    try:
        ids = loaded.tokenizer.encode(PROMPT)
        result = _prefill(loaded, ids)
        assert result.layer_major and result.logits is not None
        assert mx.array_equal(result.logits, _resident_logits(path, ids, STEP))
    finally:
        loaded.close()


@pytest.fixture
def thinking_hybrid(checkpoint_factory, tmp_path):
    """A tiny qwen3_next whose template opens <think> and drops earlier answers' thinking."""
    import shutil

    path = tmp_path / "qwen3_next-thinking"
    shutil.copytree(checkpoint_factory("qwen3_next"), path)
    return add_think_tokens(path)


def test_a_hybrid_thinking_chat_prefills_only_the_last_answer_and_the_new_message(thinking_hybrid):
    loaded = load_streamed_model(thinking_hybrid, cache_bytes=_quarter(thinking_hybrid))
    assert not loaded.trimmable_cache  # linear-attention state: restored from snapshots
    params = GenerationParams(max_tokens=6)
    store = PromptCacheStore()
    try:
        chat: list[dict] = []
        previous_boundary = 0
        for turn, question in enumerate(["How do disks work?", "And caches?", "And SSDs, briefly?"]):
            chat.append({"role": "user", "content": question})
            tokens = encode_prompt(loaded, prompt_text(loaded, chat, params))
            stats = _run(loaded, store, chat, params)
            # turn 1 on: the cache is restored from the previous turn's message boundary (its
            # answer's thinking is not in this prompt), never rebuilt from zero
            assert stats.cached_tokens == previous_boundary
            if turn:
                assert previous_boundary > 0 and stats.prompt_tokens == len(tokens) - previous_boundary
            fresh = _run(loaded, PromptCacheStore(), chat, params)  # the same turn prefilled whole
            assert stats.tokens == fresh.tokens and fresh.cached_tokens == 0
            answer = loaded.tokenizer.decode(list(stats.tokens)).split("</think>")[-1]
            chat.append({"role": "assistant", "content": answer})
            generation_prompt = "<|im_start|>assistant\n<think>\n"
            previous_boundary = len(tokens) - len(loaded.tokenizer.encode(generation_prompt))
    finally:
        loaded.close()


def test_two_chats_alternating_each_prefill_only_their_new_tokens(checkpoint_factory):
    path = checkpoint_factory("qwen3_moe")
    loaded = load_streamed_model(path)
    store = PromptCacheStore()
    params = GenerationParams(max_tokens=5)
    try:
        chats: dict[str, list[dict]] = {"a": [], "b": []}
        seen: dict[str, int] = {"a": 0, "b": 0}  # prompt tokens of each chat's last turn
        for question in ["first question", "second one", "third"]:
            for name, chat in chats.items():
                chat.append({"role": "user", "content": f"{name}: {question}"})
                tokens = encode_prompt(loaded, prompt_text(loaded, chat, params))
                stats = _run(loaded, store, chat, params)
                assert stats.cached_tokens >= seen[name]  # all of the last turn's prompt, at least
                assert stats.prompt_tokens == len(tokens) - stats.cached_tokens
                seen[name] = len(tokens)
                chat.append({"role": "assistant", "content": loaded.tokenizer.decode(list(stats.tokens))})
        assert len(store.memory) >= 2
    finally:
        loaded.close()


def test_the_kv_budget_evicts_the_least_recently_used_chat(checkpoint_factory):
    path = checkpoint_factory("qwen3_moe")
    loaded = load_streamed_model(path)
    params = GenerationParams(max_tokens=3, chat_template=False)  # the two prompts share no token
    try:
        one = PromptCacheStore()
        _run(loaded, one, [{"role": "user", "content": "a: hello"}], params)
        room_for_one = one.memory.nbytes * 3 // 2
        store = PromptCacheStore(max_bytes=room_for_one)
        a = [{"role": "user", "content": "a: hello"}]
        b = [{"role": "user", "content": "b: hello"}]
        _run(loaded, store, a, params)
        _run(loaded, store, b, params)  # b's cache pushes a's out
        assert store.memory.nbytes <= room_for_one and len(store.memory) == 1
        assert _run(loaded, store, a, params).cached_tokens == 0
        assert _run(loaded, store, a, params).cached_tokens > 0
        tiny = PromptCacheStore(max_bytes=1024)  # less than one chat's cache: said, not silent
        assert "larger than the KV budget" in _run(loaded, tiny, a, params).notice
        assert _run(loaded, tiny, a, params).cached_tokens == 0
    finally:
        loaded.close()


def test_caches_saved_on_disk_serve_the_next_run_and_bad_files_are_ignored(checkpoint_factory, tmp_path):
    path = checkpoint_factory("qwen3_next")  # a cache that cannot trim: restored from its snapshot
    params = GenerationParams(max_tokens=5)
    chat = [{"role": "user", "content": "Tell me about expert caches."}]
    folder = tmp_path / "prompt-caches"

    def store_for(loaded) -> Store:
        return Store("model-x", 1 << 30, PromptCacheFiles(folder, "model-x"))

    loaded = load_streamed_model(path)
    try:
        store = store_for(loaded)
        first = _run(loaded, store, chat, params)
        assert store.persist() >= 2  # the message-boundary snapshot and the answered cache
        chat += [
            {"role": "assistant", "content": loaded.tokenizer.decode(list(first.tokens))},
            {"role": "user", "content": "Why?"},
        ]
        boundary = message_boundary(
            loaded, chat[:1], params, encode_prompt(loaded, prompt_text(loaded, chat[:1], params))
        )
        restarted = store_for(loaded)  # a new process: nothing in memory
        stats = _run(loaded, restarted, chat, params)
        assert stats.cache_source == "disk" and 0 < boundary == stats.cached_tokens  # the whole first message
        assert stats.tokens == _run(loaded, PromptCacheStore(), chat, params).tokens

        for file in folder.glob("*.safetensors"):  # damage every file: each is ignored, with a notice
            file.write_bytes(file.read_bytes()[: file.stat().st_size // 2])
        damaged = store_for(loaded)
        stats = _run(loaded, damaged, chat, params)
        assert stats.cached_tokens == 0 and "Ignored a damaged prompt cache file" in stats.notice
        # a file naming a cache class the engine does not know is never loaded
        saved = store_for(loaded)
        _run(loaded, saved, chat, params)
        assert saved.persist() >= 1
        for file in folder.glob("*.safetensors"):  # same length: the header stays well formed
            file.write_bytes(file.read_bytes().replace(b'"KVCache"', b'"Evil00C"'))
        odd = _run(loaded, store_for(loaded), chat, params)
        assert odd.cached_tokens == 0 and "unknown cache types" in odd.notice
        foreign = Store("model-y", 1 << 30, PromptCacheFiles(folder, "model-y"))
        assert foreign.files is not None and foreign.files.files == []  # another model's: never used
    finally:
        loaded.close()


def test_kv_bits_stores_quantized_caches_that_later_turns_reuse(checkpoint_factory):
    from mlx_lm.models.cache import QuantizedKVCache

    path = checkpoint_factory("qwen3_moe_wide")  # heads of 32: quantizable in groups of 32
    loaded = load_streamed_model(path)
    params = GenerationParams(max_tokens=4)
    try:
        plain, quantized = PromptCacheStore(), PromptCacheStore(kv_bits=8)
        chat = [{"role": "user", "content": "Tell me about quantized caches, " * 4}]
        full = _run(loaded, plain, chat, params)
        small = _run(loaded, quantized, chat, params)
        (_, cache, _), *_ = quantized.memory.entries("")
        assert all(isinstance(c, QuantizedKVCache) for c in cache)
        assert quantized.memory.nbytes < plain.memory.nbytes  # 8 bits (+ scales) instead of 32
        chat += [{"role": "assistant", "content": "ok"}, {"role": "user", "content": "more"}]
        again = _run(loaded, quantized, chat, params)
        assert again.cached_tokens >= small.prompt_tokens - 1 and full.prompt_tokens == small.prompt_tokens
    finally:
        loaded.close()
