"""The Anthropic Messages API of `outlier serve --fake-engine`: errors in Anthropic's shape with
Anthropic's statuses, x-api-key, stop sequences and max_tokens as stop reasons, count_tokens, and the
shared request path (the queue's 429, a client that leaves stops its answer)."""

from __future__ import annotations

import json

import anthropic
import httpx
import pytest
from fake_serve import anthropic_client, start_fake_serve
from serve_helpers import API_KEY, stop, wait_idle

LONG = " ".join(f"word{i}" for i in range(3000))  # 30 s at the fake's 0.01 s a word: only ever cancelled
HELLO = [{"role": "user", "content": "hello there"}]


@pytest.fixture(scope="module")
def fake(tmp_path_factory):
    server = start_fake_serve(
        tmp_path_factory.mktemp("fake-anthropic"),
        f"<think>Thinking first.</think>Hello! STOP here. {LONG}",
        extra=("--max-queue", "0", "--max-body-mb", "0.05"),
    )
    yield server
    assert "Traceback" not in stop(server)


def post(served, body, path="/v1/messages", headers=None) -> httpx.Response:
    headers = {
        "x-api-key": API_KEY,
        "anthropic-version": "2023-06-01",
        "content-type": "application/json",
        **(headers or {}),
    }
    content = body if isinstance(body, (bytes, str)) else json.dumps(body)
    return httpx.post(served.url + path, content=content, headers=headers, timeout=60)


def assert_error(response: httpx.Response, status: int, kind: str, words: str) -> None:
    assert response.status_code == status, response.text
    body = response.json()
    assert body["type"] == "error" and body["error"]["type"] == kind, body
    assert words in body["error"]["message"], body


def test_stop_sequence_and_max_tokens_are_stop_reasons(fake):
    client = anthropic_client(fake)
    reply = client.messages.create(model="fake", max_tokens=50, messages=HELLO, stop_sequences=["STOP"])
    assert (reply.stop_reason, reply.stop_sequence) == ("stop_sequence", "STOP")
    assert [b.type for b in reply.content] == ["thinking", "text"]
    assert reply.content[1].text == "Hello! "
    short = client.messages.create(model="fake", max_tokens=4, messages=HELLO)
    assert (short.stop_reason, short.usage.output_tokens) == ("max_tokens", 4)
    assert short.usage.input_tokens == 2 and short.usage.cache_read_input_tokens == 0


def test_bearer_auth_works_too_and_a_wrong_key_is_401(fake):
    ok = post(fake, {"model": "m", "max_tokens": 3, "messages": HELLO})
    assert ok.status_code == 200
    bearer = httpx.post(
        fake.url + "/v1/messages",
        json={"model": "m", "max_tokens": 3, "messages": HELLO},
        headers={"Authorization": f"Bearer {API_KEY}"},
        timeout=60,
    )
    assert bearer.status_code == 200 and bearer.json()["type"] == "message"
    with pytest.raises(anthropic.AuthenticationError) as caught:
        anthropic_client(fake, api_key="wrong").messages.create(model="m", max_tokens=3, messages=HELLO)
    assert caught.value.status_code == 401 and caught.value.body["error"]["type"] == "authentication_error"
    assert_error(
        post(fake, {}, path="/v1/messages/count_tokens", headers={"x-api-key": ""}),
        401,
        "authentication_error",
        "x-api-key",
    )


@pytest.mark.parametrize(
    ("body", "words"),
    [
        (b"{not json", "not valid JSON"),
        ({"model": "m", "messages": HELLO}, "'max_tokens' is required"),
        ({"model": "m", "max_tokens": 0, "messages": HELLO}, "max_tokens"),
        ({"model": "m", "max_tokens": 5, "messages": []}, "'messages'"),
        ({"model": "m", "max_tokens": 5, "messages": [{"role": "robot", "content": "x"}]}, "messages[0]"),
        (
            {
                "model": "m",
                "max_tokens": 5,
                "messages": [{"role": "user", "content": [{"type": "image", "source": {}}]}],
            },
            "'image' blocks are not supported",
        ),
        ({"model": "m", "max_tokens": 5, "messages": HELLO, "temperature": 1.5}, "'temperature'"),
        ({"model": "m", "max_tokens": 5, "messages": HELLO, "top_k": 5}, "'top_k' is not supported"),
        ({"model": "m", "max_tokens": 5, "messages": HELLO, "tool_choice": {"type": "any"}}, "cannot force"),
        ({"model": "m", "max_tokens": 5, "messages": HELLO, "tools": [{"name": ""}]}, "tools[0].name"),
        ({"model": "m", "max_tokens": 5, "messages": HELLO, "stop_sequences": "x"}, "stop_sequences"),
        (
            {"model": "m", "max_tokens": 5, "messages": [*HELLO, {"role": "assistant", "content": "Sure"}]},
            "prefilled",
        ),
        (
            {"model": "m", "max_tokens": 5, "messages": HELLO, "tools": [{"type": "web_search_20250305", "name": "w"}]},
            "server tools",
        ),
        ({"model": "m", "max_tokens": 5, "messages": HELLO, "thinking": {"type": "sometimes"}}, "'thinking'"),
    ],
)
def test_bad_requests_are_400_invalid_request_error(fake, body, words):
    assert_error(post(fake, body), 400, "invalid_request_error", words)


def test_sdk_raises_bad_request_with_the_body(fake):
    with pytest.raises(anthropic.BadRequestError) as caught:
        anthropic_client(fake).messages.create(model="m", max_tokens=5, messages=HELLO, extra_body={"temperature": 3})
    assert caught.value.body["error"]["type"] == "invalid_request_error"


def test_not_found_method_and_size_errors(fake):
    assert_error(post(fake, {}, path="/v1/messages/batches"), 404, "not_found_error", "No such endpoint")
    got = httpx.get(fake.url + "/v1/messages", headers={"x-api-key": API_KEY})
    assert_error(got, 405, "invalid_request_error", "GET is not allowed")
    big = {"model": "m", "max_tokens": 5, "messages": [{"role": "user", "content": "x" * 100_000}]}
    assert_error(post(fake, big), 413, "request_too_large", "larger than")


def test_count_tokens(fake):
    client = anthropic_client(fake)
    assert client.messages.count_tokens(model="m", messages=HELLO).input_tokens == 2
    tools = [{"name": "f", "input_schema": {"type": "object"}}]
    with_tools = client.messages.count_tokens(model="m", messages=HELLO, tools=tools, system="be brief")
    assert with_tools.input_tokens > 4  # the fake counts words, of the tools too


def test_queue_full_is_429_and_a_client_that_leaves_stops_its_answer(fake):
    body = {"model": "m", "max_tokens": 5000, "messages": HELLO, "stream": True}
    headers = {"x-api-key": API_KEY}
    with httpx.stream("POST", fake.url + "/v1/messages", json=body, headers=headers, timeout=60) as first:
        assert first.status_code == 200 and first.headers["content-type"].startswith("text/event-stream")
        lines = first.iter_lines()
        assert next(lines) == "event: message_start"
        assert_error(post(fake, {**body, "stream": False}), 429, "rate_limit_error", "busy")
    wait_idle(fake)  # the 30-second answer was cancelled when the stream closed


def test_stream_event_sequence(fake):
    body = {"model": "m", "max_tokens": 4, "messages": HELLO, "stream": True}
    with httpx.stream("POST", fake.url + "/v1/messages", json=body, headers={"x-api-key": API_KEY}) as r:
        events = [line[len("event: ") :] for line in r.iter_lines() if line.startswith("event: ")]
    assert events[:3] == ["message_start", "ping", "content_block_start"]
    assert events[-3:] == ["content_block_stop", "message_delta", "message_stop"]
    assert events.count("content_block_start") == events.count("content_block_stop") == 2  # thinking, text


def test_thinking_disabled_reaches_the_template_switch(fake):
    client = anthropic_client(fake)
    off = client.messages.create(model="m", max_tokens=5, messages=HELLO, thinking={"type": "disabled"})
    assert [b.type for b in off.content] == ["text"]  # the fake, told not to think, does not
    on = client.messages.create(
        model="m", max_tokens=5, messages=HELLO, thinking={"type": "enabled", "budget_tokens": 1024}
    )
    assert [b.type for b in on.content] == ["thinking", "text"]


def test_statuses_map_to_anthropic_types():
    from outlier_tui.server.anthropic import error_response
    from outlier_tui.server.errors import ApiError

    for status, expected, kind in (
        (503, 529, "overloaded_error"),
        (500, 500, "api_error"),
        (429, 429, "rate_limit_error"),
    ):
        response = error_response(ApiError(status, "x"))
        assert response.status_code == expected
        assert json.loads(response.body)["error"]["type"] == kind


async def test_an_engine_failure_mid_stream_is_an_error_event():
    """In process: the fake engine fails after two pieces, once the stream has started."""
    from engine.fake import FakeEngine
    from outlier_tui.server.app import build_app
    from outlier_tui.server.routes import ServerConfig

    engine = FakeEngine(script=["one two three four five"], fail_generate_after=2)
    engine.load("fake").result()
    app = build_app(engine, ServerConfig(model_name="fake"))
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://localhost") as client:
        body = {"model": "m", "max_tokens": 50, "messages": HELLO, "stream": True}
        response = await client.post("/v1/messages", json=body)
    lines = response.text.splitlines()
    events = [line[len("event: ") :] for line in lines if line.startswith("event: ")]
    assert events[:3] == ["message_start", "ping", "content_block_start"] and events[-1] == "error"
    error = json.loads(lines[lines.index("event: error") + 1][len("data: ") :])
    assert error["type"] == "error" and error["error"]["type"] == "api_error"
    assert "engine failed" in error["error"]["message"]  # its details stay in the server's log
