"""Requests the engine cannot run are refused in one line; cancel is honoured
during a long prefill too (between prefill chunks), leaving the chat reusable."""

import threading

import pytest
from oracle import oracle_answer

from engine import Engine, GenerationDone, GenerationFailed, GenerationParams, generation
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


class _CancelAfterFirstForward:
    """Wraps the model: sets `cancel` once the first forward pass has been built."""

    def __init__(self, model, cancel: threading.Event) -> None:
        self.model, self.cancel, self.calls = model, cancel, 0

    def __call__(self, *args, **kwargs):
        self.calls += 1
        out = self.model(*args, **kwargs)  # the MoE layers' host syncs run in here
        self.cancel.set()
        return out

    def __getattr__(self, name):
        return getattr(self.model, name)


def test_cancel_is_honoured_between_prefill_chunks(checkpoint_factory, monkeypatch):
    step = 512  # chunks smaller than the default, so three fit in the tiny model's context
    monkeypatch.setattr(generation, "PREFILL_STEP", step)
    path = checkpoint_factory("mixtral")
    loaded = load_streamed_model(path)
    try:
        prompt = "abc" * step  # three prefill chunks (one token per byte)
        messages = [{"role": "user", "content": prompt}]
        params = GenerationParams(max_tokens=5, **RAW)
        conv, cancel = PromptCacheStore(), threading.Event()
        real_model = loaded.model
        loaded.model = _CancelAfterFirstForward(real_model, cancel)
        stats, cancelled = generate(loaded, conv, messages, params, cancel, lambda text, token, kind: None)
        assert cancelled and loaded.model.calls == 1 and stats.generation_tokens == 0
        assert len(conv.tokens) == step  # the KV cache holds exactly the chunk that ran

        loaded.model = real_model  # the same chat continues from the chunk already in the cache
        stats, cancelled = generate(loaded, conv, messages, params, threading.Event(), lambda t, i, k: None)
        assert not cancelled and stats.prompt_tokens == len(prompt) - step
        assert list(stats.tokens) == oracle_answer(path, lambda tok: tok.encode(prompt), 5)
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
        assert conv.tokens == [] and loaded.streamer.stop_prefill is None

        loaded.streamer.fetch = fetch
        stats, cancelled = generate(loaded, conv, messages, params, threading.Event(), lambda t, i, k: None)
        assert not cancelled and list(stats.tokens) == oracle_answer(path, lambda tok: tok.encode(prompt), 5)
    finally:
        loaded.close()
