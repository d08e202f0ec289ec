"""A reasoning model through `outlier serve`: thinking in `reasoning_content` (streamed as
delta.reasoning_content), never in `content`; `chat_template_kwargs.enable_thinking` switches it;
the remote client turns it back into thinking deltas."""

from __future__ import annotations

import pytest
from serve_helpers import API_KEY, start_outlier_serve, stop

from engine.api import GenerationParams, TextDelta
from engine.reasoning import ANSWER, THINKING
from engine.remote import RemoteEngine

QUESTION = [{"role": "user", "content": "Why is the sky blue?"}]
TOKENS = 12


@pytest.fixture(scope="module")
def thinking_server(tmp_path_factory):
    from thinking_checkpoint import write_thinking_checkpoint

    server = start_outlier_serve(write_thinking_checkpoint(tmp_path_factory.mktemp("thinking")))
    yield server
    assert "Traceback" not in stop(server)


@pytest.mark.parametrize("enable", [None, False])
def test_thinking_is_reasoning_content_never_content(thinking_server, enable):
    from thinking_checkpoint import oracle_split

    _, thinking, answer = oracle_split(thinking_server.checkpoint, QUESTION, enable, TOKENS)
    assert bool(thinking) == (enable is None)  # the template opens <think>: all of it is thinking
    extra = {} if enable is None else {"extra_body": {"chat_template_kwargs": {"enable_thinking": enable}}}
    client = thinking_server.client()
    reply = client.chat.completions.create(model="m", messages=QUESTION, max_tokens=TOKENS, temperature=0, **extra)
    message = reply.choices[0].message
    assert message.content == answer
    assert getattr(message, "reasoning_content", None) == (thinking or None)
    chunks = list(
        client.chat.completions.create(
            model="m", messages=QUESTION, max_tokens=TOKENS, temperature=0, stream=True, **extra
        )
    )
    deltas = [c.choices[0].delta for c in chunks if c.choices]
    assert "".join(d.content or "" for d in deltas) == answer
    assert "".join(getattr(d, "reasoning_content", None) or "" for d in deltas) == thinking


def test_remote_engine_gets_thinking_back_as_thinking(thinking_server):
    from thinking_checkpoint import oracle_split

    _, thinking, answer = oracle_split(thinking_server.checkpoint, QUESTION, None, TOKENS)
    engine = RemoteEngine(thinking_server.url, api_key=API_KEY)
    try:
        info = engine.load("").result(timeout=60)
        assert (info.think_start, info.think_end) == ("<think>", "</think>")  # from the server's telemetry
        deltas = [
            e
            for e in engine.generate(QUESTION, GenerationParams(max_tokens=TOKENS, temperature=0.0))
            if isinstance(e, TextDelta)
        ]
        assert "".join(d.text for d in deltas if d.kind == THINKING) == thinking
        assert "".join(d.text for d in deltas if d.kind == ANSWER) == answer
        off = [
            e
            for e in engine.generate(
                QUESTION, GenerationParams(max_tokens=TOKENS, temperature=0.0, enable_thinking=False)
            )
            if isinstance(e, TextDelta)
        ]
        assert {d.kind for d in off} == {ANSWER}
    finally:
        engine.close()
