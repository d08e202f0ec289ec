"""`outlier serve` through the official openai client: answers equal `outlier generate`'s,
errors are OpenAI-style JSON, requests queue fairly and a client that leaves stops its answer."""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import threading
import time

import httpx
import openai
import pytest
from serve_helpers import CANCELLED_WITHIN, LONG_ANSWER, start_outlier_serve, stop, telemetry, wait_idle

from engine.api import EngineState, TelemetrySnapshot
from engine.wire import snapshot_from_json, snapshot_to_json


def generate(checkpoint, prompt: str, max_tokens: int, tmp_path, *extra: str) -> tuple[str, list[int]]:
    """`outlier generate`'s greedy answer text and tokens (the oracle for the server)."""
    stats = tmp_path / "stats.json"
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "outlier_tui.cli",
            "generate",
            "--model",
            str(checkpoint),
            "--prompt",
            prompt,
            "--max-tokens",
            str(max_tokens),
            "--stats-json",
            str(stats),
            *extra,
        ],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "PYTHONWARNINGS": "ignore"},
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.endswith("\n")
    return result.stdout[:-1], json.loads(stats.read_text())["tokens"]


def test_chat_answer_equals_generate(served, tmp_path):
    text, tokens = generate(served.checkpoint, "Hello", 24, tmp_path)
    reply = served.client().chat.completions.create(
        model=served.model, messages=[{"role": "user", "content": "Hello"}], max_tokens=24, temperature=0
    )
    choice = reply.choices[0]
    assert choice.message.content == text
    assert choice.message.role == "assistant"
    assert reply.usage.completion_tokens == len(tokens)
    assert choice.finish_reason == ("length" if len(tokens) == 24 else "stop")
    assert reply.usage.prompt_tokens > 0
    assert reply.usage.total_tokens == reply.usage.prompt_tokens + reply.usage.completion_tokens
    assert reply.model == served.model


def test_streamed_chat_equals_generate(served, tmp_path):
    text, tokens = generate(served.checkpoint, "Tell me a story", 24, tmp_path)
    chunks = list(
        served.client().chat.completions.create(
            model=served.model,
            messages=[{"role": "user", "content": "Tell me a story"}],
            max_tokens=24,
            temperature=0,
            stream=True,
            stream_options={"include_usage": True},
        )
    )
    assert chunks[0].choices[0].delta.role == "assistant"
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == text
    finishes = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
    assert finishes == ["length" if len(tokens) == 24 else "stop"]
    assert chunks[-1].choices == [] and chunks[-1].usage.completion_tokens == len(tokens)
    # The same conversation again: its prompt comes from the KV cache, all but the last token.
    again = served.client().chat.completions.create(
        model=served.model, messages=[{"role": "user", "content": "Tell me a story"}], max_tokens=24, temperature=0
    )
    assert again.choices[0].message.content == text
    assert again.usage.prompt_tokens_details.cached_tokens == again.usage.prompt_tokens - 1


def test_text_completion_equals_generate_without_template(served, tmp_path):
    text, tokens = generate(served.checkpoint, "abc", 16, tmp_path, "--no-chat-template")
    reply = served.client().completions.create(model=served.model, prompt="abc", max_tokens=16, temperature=0)
    assert reply.choices[0].text == text
    assert reply.usage.completion_tokens == len(tokens)
    streamed = served.client().completions.create(
        model=served.model, prompt="abc", max_tokens=16, temperature=0, stream=True
    )
    assert "".join(c.choices[0].text for c in streamed if c.choices) == text


def test_stop_sequence_cuts_the_answer(served, tmp_path):
    text, _ = generate(served.checkpoint, "abc", 24, tmp_path, "--no-chat-template")
    stop_at = text[len(text) // 2 : len(text) // 2 + 2]
    expected = text[: text.index(stop_at)]
    for stream in (False, True):
        reply = served.client().completions.create(
            model=served.model, prompt="abc", max_tokens=24, temperature=0, stop=[stop_at], stream=stream
        )
        if stream:
            chunks = list(reply)
            got = "".join(c.choices[0].text for c in chunks if c.choices)
            finish = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
        else:
            got, finish = reply.choices[0].text, [reply.choices[0].finish_reason]
        assert got == expected and finish == ["stop"]


def test_seeded_sampling_is_repeatable_and_the_seed_is_used(served):
    def ask(seed):
        return (
            served.client()
            .chat.completions.create(
                model=served.model,
                messages=[{"role": "user", "content": "hi"}],
                max_tokens=12,
                temperature=0.9,
                top_p=0.9,
                seed=seed,
            )
            .choices[0]
            .message.content
        )

    first = ask(7)
    assert ask(7) == first
    # A server that ignored the seed would pass the line above; the same request with other
    # seeds must sample another answer (12 tokens of a random tiny model at T=0.9: all three
    # matching by chance is out of reach).
    assert {ask(8), ask(9), ask(10)} - {first}


def test_models_and_health(served):
    models = served.client().models.list()
    assert [m.id for m in models.data] == [served.model]
    health = httpx.get(served.url + "/health").json()
    assert health["status"] == "ok" and health["model"] == served.model


def _assert_openai_error(response: httpx.Response, status: int) -> dict:
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert error["message"] and "Traceback" not in error["message"] and "\n" not in error["message"]
    return error


def test_bad_requests_get_openai_errors(served):
    url = served.base_url + "/chat/completions"
    headers = served.headers()
    json_headers = {**headers, "Content-Type": "application/json"}
    _assert_openai_error(httpx.post(url, content=b"{not json", headers=json_headers), 400)
    _assert_openai_error(httpx.post(url, json=["a list"], headers=headers), 400)
    error = _assert_openai_error(httpx.post(url, json={"messages": []}, headers=headers), 400)
    assert error["param"] == "messages"
    error = _assert_openai_error(
        httpx.post(url, json={"messages": [{"role": "user", "content": "x"}], "max_tokens": 0}, headers=headers), 400
    )
    assert error["param"] == "max_tokens"
    _assert_openai_error(httpx.post(url, json={"messages": [{"role": "wizard", "content": "x"}]}, headers=headers), 400)
    _assert_openai_error(
        httpx.post(url, json={"messages": [{"role": "user", "content": "x"}], "temperature": "hot"}, headers=headers),
        400,
    )
    _assert_openai_error(httpx.post(served.base_url + "/completions", json={"prompt": [1, 2, 3]}, headers=headers), 400)
    # Over-long prompt (the checkpoint's context is 512 tokens; its tokenizer is one token per byte).
    client = served.client()
    with pytest.raises(openai.BadRequestError) as caught:
        client.chat.completions.create(model=served.model, messages=[{"role": "user", "content": "a" * 600}])
    assert caught.value.code == "context_length_exceeded"
    assert "context holds" in caught.value.body["message"]
    with pytest.raises(openai.BadRequestError):  # streamed: the status is still 400, not a broken stream
        client.chat.completions.create(
            model=served.model, messages=[{"role": "user", "content": "a" * 600}], stream=True
        )
    # Wrong or missing key.
    with pytest.raises(openai.AuthenticationError):
        served.client(api_key="wrong").chat.completions.create(
            model=served.model, messages=[{"role": "user", "content": "x"}]
        )
    _assert_openai_error(httpx.get(served.base_url + "/models"), 401)
    _assert_openai_error(httpx.get(served.base_url + "/outlier/telemetry"), 401)
    # Body over the server's 1 MiB limit.
    big = {"messages": [{"role": "user", "content": "a" * (1024 * 1024 + 10)}]}
    _assert_openai_error(httpx.post(url, json=big, headers=headers), 413)
    # Unknown endpoint, wrong method.
    _assert_openai_error(httpx.get(served.base_url + "/embeddings", headers=headers), 404)
    _assert_openai_error(httpx.get(url, headers=headers), 405)
    # The server is still fine.
    assert (
        client.chat.completions.create(model=served.model, messages=[{"role": "user", "content": "x"}], max_tokens=2)
        .choices[0]
        .message.content
        is not None
    )


def test_three_concurrent_clients_are_all_answered(served):
    prompts = ["one", "two", "three"]

    def ask(prompt: str) -> str:
        return (
            served.client()
            .chat.completions.create(
                model=served.model, messages=[{"role": "user", "content": prompt}], max_tokens=40, temperature=0
            )
            .choices[0]
            .message.content
        )

    alone = {p: ask(p) for p in prompts}
    answers: dict[str, str] = {}
    threads = [threading.Thread(target=lambda p=p: answers.__setitem__(p, ask(p))) for p in prompts]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert answers == alone


def _start_stream(served, max_tokens: int = LONG_ANSWER):
    """A streamed request that would run for a long time; returns (client, response, line iterator)
    once its first chunk arrived (so it runs on the engine). Keep the iterator: dropping it closes
    the response."""
    client = httpx.Client(timeout=60)
    request = client.build_request(
        "POST",
        served.base_url + "/chat/completions",
        headers=served.headers(),
        json={
            "messages": [{"role": "user", "content": "go on"}],
            "temperature": 0,
            "max_tokens": max_tokens,
            "stream": True,
        },
    )
    response = client.send(request, stream=True)
    assert response.status_code == 200
    lines = response.iter_lines()
    assert next(line for line in lines if line.startswith("data: "))
    return client, response, lines


def test_client_disconnect_cancels_its_generation(served_long):
    wait_idle(served_long)
    step_before = telemetry(served_long)["step"]
    client, response, _lines = _start_stream(served_long)
    response.close()  # the client goes away mid-answer
    client.close()
    wait_idle(served_long)
    steps = telemetry(served_long)["step"] - step_before
    assert steps < CANCELLED_WITHIN, f"the engine kept generating after the client left ({steps} steps)"
    # The engine is free: a new request is answered.
    reply = served_long.client().chat.completions.create(
        model=served_long.model, messages=[{"role": "user", "content": "x"}], max_tokens=3, temperature=0
    )
    assert reply.usage.completion_tokens >= 1


def test_non_streamed_client_that_gives_up_cancels_too(served_long):
    wait_idle(served_long)
    step_before = telemetry(served_long)["step"]
    with pytest.raises(httpx.ReadTimeout):  # the client stops waiting and closes the connection
        httpx.post(
            served_long.base_url + "/chat/completions",
            headers=served_long.headers(),
            timeout=httpx.Timeout(1.0),
            json={"messages": [{"role": "user", "content": "go on"}], "temperature": 0, "max_tokens": LONG_ANSWER},
        )
    wait_idle(served_long)
    steps = telemetry(served_long)["step"] - step_before
    assert steps < CANCELLED_WITHIN, f"the engine kept generating after the client left ({steps} steps)"


def test_full_queue_gets_429_and_leaving_clients_free_it(served_long):
    wait_idle(served_long)
    running = _start_stream(served_long)
    waiting = []
    for _ in range(2):  # --max-queue 2: two may wait behind the running one
        client = httpx.Client(timeout=60)
        request = client.build_request(
            "POST",
            served_long.base_url + "/chat/completions",
            headers=served_long.headers(),
            json={"messages": [{"role": "user", "content": "wait"}], "stream": True, "max_tokens": 5},
        )
        thread = threading.Thread(target=lambda c=client, r=request: _swallow(c.send, r, stream=True), daemon=True)
        thread.start()
        waiting.append(client)
    deadline = time.monotonic() + 30
    while httpx.get(served_long.url + "/health").json()["requests"] < 3 and time.monotonic() < deadline:
        time.sleep(0.02)
    assert httpx.get(served_long.url + "/health").json()["requests"] == 3
    with pytest.raises(openai.RateLimitError) as caught:
        served_long.client().chat.completions.create(
            model=served_long.model, messages=[{"role": "user", "content": "x"}]
        )
    assert caught.value.code == "queue_full"
    for client in [running[0], *waiting]:
        client.close()  # all three leave: the running one is cancelled, the waiting ones leave the line
    wait_idle(served_long)
    assert (
        served_long.client()
        .chat.completions.create(model=served_long.model, messages=[{"role": "user", "content": "x"}], max_tokens=2)
        .choices
    )


def _swallow(fn, *args, **kwargs):
    with contextlib.suppress(httpx.HTTPError, RuntimeError):
        fn(*args, **kwargs)


def test_telemetry_stream_carries_the_heatmap(served):
    served.client().chat.completions.create(
        model=served.model, messages=[{"role": "user", "content": "x"}], max_tokens=4, temperature=0
    )
    data = telemetry(served)
    assert data["state"] == "idle"  # strings on the wire
    snapshot = snapshot_from_json(data)
    assert snapshot.state is EngineState.IDLE
    assert snapshot.model is not None and snapshot.model.num_experts == 8
    assert snapshot.hits.shape == (3, 8) and snapshot.resident.dtype == bool
    assert snapshot.hits.sum() + snapshot.misses.sum() > 0
    assert snapshot.cache_budget_bytes == snapshot.model.cache_budget_bytes > 0


def test_engine_state_is_a_plain_string_in_json_and_an_enum_after():
    data = snapshot_to_json(TelemetrySnapshot(state=EngineState.GENERATING, step=3))
    assert type(data["state"]) is str and json.dumps(data["state"]) == '"generating"'
    assert snapshot_from_json(json.loads(json.dumps(data))).state is EngineState.GENERATING


def test_non_loopback_without_key_warns(checkpoint_factory):
    server = start_outlier_serve(checkpoint_factory("mixtral"), api_key=None, host="0.0.0.0")
    try:
        assert httpx.get(server.base_url + "/models").status_code == 200  # open: no key asked
    finally:
        err = stop(server)
    assert "warning" in err and "--api-key" in err
    assert "Traceback" not in err


def test_port_in_use_is_one_line_before_loading(tmp_path):
    import socket

    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        result = subprocess.run(
            [sys.executable, "-m", "outlier_tui.cli", "serve", "--model", str(tmp_path / "none"), "--port", str(port)],
            capture_output=True,
            text=True,
            timeout=120,
        )
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("outlier: cannot listen") and str(port) in lines[0]


def test_event_stream_listener_gets_every_event_in_order():
    from engine.api import GenerationDone, GenerationStats, TextDelta
    from engine.events import EventStream

    stats = GenerationStats((), 0, 0, 0.0, 0.0, 0.0, 0, 0, 0, 0, 0, 0, 0.0)
    stream = EventStream()
    stream.put(TextDelta("a", 1))  # before anyone listens: queued, then handed over in order
    got = []
    stream.listen(got.append)
    stream.put(TextDelta("b", 2))
    stream.put(GenerationDone(stats))
    assert [getattr(e, "text", "done") for e in got] == ["a", "b", "done"]


def test_answer_cut_at_the_context_limit_finishes_with_length(served_long):
    reply = served_long.client().chat.completions.create(
        model=served_long.model,
        messages=[{"role": "user", "content": "a" * 4000}],
        max_tokens=LONG_ANSWER,
        temperature=0,
    )
    assert reply.usage.total_tokens == 4096  # the tokenizer's model_max_length: the context
    assert reply.choices[0].finish_reason == "length"


def test_two_clients_alternating_each_prefill_only_their_new_tokens(served):
    """Two agents' conversations through one server: each turn finds its own prefix in the
    prompt caches (the other client's turns in between do not throw it away)."""
    chats: dict[str, list[dict]] = {
        "a": [{"role": "system", "content": "You are agent A. " * 4}],
        "b": [{"role": "system", "content": "You are agent B, a different one. " * 3}],
    }
    last_prompt = {"a": 0, "b": 0}
    for turn in range(3):
        for name, chat in chats.items():
            chat.append({"role": "user", "content": f"{name} asks question {turn}"})
            reply = served.client().chat.completions.create(
                model=served.model, messages=chat, max_tokens=4, temperature=0
            )
            usage = reply.usage
            cached = usage.prompt_tokens_details.cached_tokens
            assert cached >= last_prompt[name]  # everything this client sent before, at least
            last_prompt[name] = usage.prompt_tokens
            chat.append({"role": "assistant", "content": reply.choices[0].message.content or "ok"})
