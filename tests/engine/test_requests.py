"""Requests the engine cannot run are refused in one line; cancel is honoured
during a long prefill too (at the next MoE layer), leaving the chat reusable."""

import threading

import pytest
from oracle import oracle_answer

from engine import Engine, GenerationDone, GenerationFailed, GenerationParams
from engine import prefill as prefill_module
from engine.errors import RequestError
from engine.generation import PromptCacheStore, answer_room, generate
from engine.loader import load_streamed_model

RAW = dict(chat_template=False)


@pytest.mark.parametrize(
    "params,expected",
    [
        (GenerationParams(max_tokens=0), "max_tokens"),
        (GenerationParams(temperature=float("nan")), "temperature"),
        (GenerationParams(temperature=-1.0), "temperature"),
        (GenerationParams(top_p=0.0), "top_p"),
        (GenerationParams(top_p=float("inf")), "top_p"),
        (GenerationParams(seed=-1), "seed"),
        (GenerationParams(seed=2**64), "seed"),
    ],
)
def test_bad_params_fail_in_one_line_and_the_engine_keeps_serving(checkpoint_factory, params, expected):
    engine = Engine()
    try:
        engine.load(str(checkpoint_factory("mixtral"))).result()
        events = list(engine.generate([{"role": "user", "content": "hi"}], params))
        assert isinstance(events[-1], GenerationFailed)
        assert expected in events[-1].message and "Internal error" not in events[-1].message
        done = list(engine.generate([{"role": "user", "content": "hi"}], GenerationParams(max_tokens=2)))[-1]
        assert isinstance(done, GenerationDone)
    finally:
        engine.close()


def test_answer_room_refuses_empty_and_too_long_prompts():
    with pytest.raises(RequestError, match="0 tokens"):
        answer_room(0, GenerationParams(), 4096)
    with pytest.raises(RequestError, match="4096 tokens.*holds 4096"):
        answer_room(4096, GenerationParams(), 4096)
    assert answer_room(4090, GenerationParams(max_tokens=100), 4096) == 6
    assert answer_room(10, GenerationParams(max_tokens=100), 4096) == 100
    assert answer_room(10**6, GenerationParams(max_tokens=100), 0) == 100  # limit unknown


def test_cancel_during_a_long_prompt_keeps_the_cached_prefix(checkpoint_factory, monkeypatch):
    """A layer-major prefill cancelled half-way throws its half-filled cache away; the chat's
    earlier prefix stays cached, so the retry prefills only what is new."""
    monkeypatch.setattr(prefill_module, "PREFILL_STEP", 128)
    path = checkpoint_factory("mixtral")
    probe = load_streamed_model(path)
    quarter = max(probe.info.min_cache_bytes, probe.info.total_expert_bytes // 4)
    probe.close()
    loaded = load_streamed_model(path, cache_bytes=quarter)  # experts stream: the prompt runs layer-major
    try:
        params = GenerationParams(max_tokens=5, **RAW)
        store = PromptCacheStore()
        short = "abc" * 40
        generate(loaded, store, [{"role": "user", "content": short}], params, threading.Event(), lambda *a: None)
        prompt = short + "xyz" * 128  # four chunks past the cached prefix
        fetch, rows_run, cancel = loaded.streamer.fetch, [], threading.Event()

        def fetch_then_cancel(row, experts, bulk=False, ahead=None):
            rows_run.append(row)
            if row == 1:
                cancel.set()  # Esc while the prompt's second MoE layer runs
            return fetch(row, experts, bulk, ahead)

        loaded.streamer.fetch = fetch_then_cancel
        messages = [{"role": "user", "content": prompt}]
        stats, cancelled = generate(loaded, store, messages, params, cancel, lambda *a: None)
        assert cancelled and stats.generation_tokens == 0 and stats.layer_major
        assert rows_run == [0, 1]  # all four chunks waited at each layer: one fetch per layer
        assert loaded.streamer.stop_prefill is None and loaded.streamer.layer_major is None

        loaded.streamer.fetch = fetch
        stats, cancelled = generate(loaded, store, messages, params, threading.Event(), lambda *a: None)
        assert not cancelled and stats.cached_tokens == len(short)  # one token is always prefilled
        assert list(stats.tokens) == oracle_answer(path, lambda tok: tok.encode(prompt), 5, step=128)
    finally:
        loaded.close()


def test_cancel_stops_a_prefill_chunk_at_the_next_moe_layer(checkpoint_factory):
    """On a slow machine one prefill chunk takes minutes: cancel must not wait for it."""
    path = checkpoint_factory("mixtral")
    probe = load_streamed_model(path)
    minimum = probe.info.expert_bytes * probe.info.top_k
    probe.close()
    loaded = load_streamed_model(path, cache_bytes=minimum)  # every layer fetches: a stop point
    try:
        prompt = "abc" * 50  # one chunk
        messages = [{"role": "user", "content": prompt}]
        params = GenerationParams(max_tokens=5, **RAW)
        conv, cancel = PromptCacheStore(), threading.Event()
        fetch, layers_run = loaded.streamer.fetch, []

        def fetch_then_cancel(row, experts, bulk=False):
            layers_run.append(row)
            cancel.set()  # the user presses Ctrl-C while the first MoE layer runs
            return fetch(row, experts, bulk)

        loaded.streamer.fetch = fetch_then_cancel
        stats, cancelled = generate(loaded, conv, messages, params, cancel, lambda t, i, k: None)
        assert cancelled and stats.generation_tokens == 0
        assert layers_run == [0]  # stopped at layer 1 of 3, inside the chunk
        assert len(conv.memory) == 0 and loaded.streamer.stop_prefill is None  # nothing half-filled kept

        loaded.streamer.fetch = fetch
        stats, cancelled = generate(loaded, conv, messages, params, threading.Event(), lambda t, i, k: None)
        assert not cancelled and list(stats.tokens) == oracle_answer(path, lambda tok: tok.encode(prompt), 5)
    finally:
        loaded.close()
