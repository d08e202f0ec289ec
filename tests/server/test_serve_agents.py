"""An agent loop on both APIs against `outlier serve --fake-engine`, through the official `openai`
and `anthropic` clients: tools go in, the model's call (in several mlx-lm parser formats, and gpt-oss
harmony channels) comes out parsed, the tool's result goes back, the final answer arrives; thinking
is reasoning_content / thinking blocks, never text; no tool-call markup reaches the text."""

from __future__ import annotations

import json

import pytest
from fake_serve import anthropic_client, start_fake_serve
from serve_helpers import stop

WEATHER = {
    "type": "object",
    "properties": {"city": {"type": "string"}, "days": {"type": "integer"}},
    "required": ["city"],
}
OPENAI_TOOLS = [
    {"type": "function", "function": {"name": "get_weather", "description": "Weather", "parameters": WEATHER}}
]
ANTHROPIC_TOOLS = [{"name": "get_weather", "description": "Weather", "input_schema": WEATHER}]
ARGS = {"city": "Paris", "days": 2}
FINAL = "It is sunny in Paris."

# The same call as each parser's model writes it, with thinking and a line of text before it.
CALLS = {
    "json_tools": '<think>I need the weather.</think>Let me look. <tool_call>\n{"name": "get_weather", '
    '"arguments": {"city": "Paris", "days": 2}}\n</tool_call>',
    "qwen3_coder": "<think>I need the weather.</think>Let me look. <tool_call>\n<function=get_weather>\n"
    "<parameter=city>\nParis\n</parameter>\n<parameter=days>\n2\n</parameter>\n</function>\n</tool_call>",
    "pythonic": '<think>I need the weather.</think>Let me look. <|tool_call_start|>[get_weather(city="Paris", '
    "days=2)]<|tool_call_end|>",
    "mistral": "<think>I need the weather.</think>Let me look. "
    '[TOOL_CALLS]get_weather[ARGS]{"city": "Paris", "days": 2}',
    "harmony": "<|channel|>analysis<|message|>I need the weather.<|end|><|start|>assistant<|channel|>commentary"
    "<|message|>Let me look.<|end|><|start|>assistant<|channel|>commentary to=functions.get_weather <|constrain|>json"
    '<|message|>{"city": "Paris", "days": 2}<|call|>',
}
ANSWERS = {
    "harmony": "<|channel|>analysis<|message|>The tool says sunny.<|end|><|start|>assistant<|channel|>final"
    f"<|message|>{FINAL}<|return|>",
}
MARKUP = ("<tool_call>", "<function=", "<|tool_call", "[TOOL_CALLS]", "<|channel|>", "<think>", "get_weather(")


@pytest.fixture(scope="module", params=sorted(CALLS))
def agent_server(request, tmp_path_factory):
    fmt = request.param
    answer = ANSWERS.get(fmt, f"<think>The tool says sunny.</think>{FINAL}")
    parser = "json_tools" if fmt == "harmony" else fmt
    server = start_fake_serve(tmp_path_factory.mktemp(f"fake-{fmt}"), CALLS[fmt], answer, parser=parser)
    yield fmt, server
    assert "Traceback" not in stop(server)


def _clean(text: str | None) -> None:
    assert not any(m in (text or "") for m in MARKUP), text


@pytest.mark.parametrize("stream", [False, True])
def test_openai_agent_loop(agent_server, stream):
    fmt, served = agent_server
    client = served.client()
    messages = [{"role": "user", "content": "What is the weather in Paris?"}]
    if stream:
        chunks = list(client.chat.completions.create(model="fake", messages=messages, tools=OPENAI_TOOLS, stream=True))
        deltas = [c.choices[0].delta for c in chunks if c.choices]
        text = "".join(d.content or "" for d in deltas)
        thinking = "".join(getattr(d, "reasoning_content", None) or "" for d in deltas)
        calls = [tc for d in deltas for tc in d.tool_calls or []]
        finish = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
        assert finish == ["tool_calls"]
        assert [tc.index for tc in calls] == [0]
    else:
        reply = client.chat.completions.create(model="fake", messages=messages, tools=OPENAI_TOOLS)
        choice = reply.choices[0]
        assert choice.finish_reason == "tool_calls"
        text, thinking, calls = choice.message.content, choice.message.reasoning_content, choice.message.tool_calls
    assert thinking == "I need the weather."
    assert text.strip() == "Let me look."
    _clean(text)
    (call,) = calls
    assert call.type == "function" and call.function.name == "get_weather"
    assert json.loads(call.function.arguments) == ARGS  # qwen3_coder converts by the schema's types

    said = (
        reply.choices[0].message.model_dump(exclude_none=True)  # as the README shows
        if not stream
        else {
            "role": "assistant",
            "content": text,
            "tool_calls": [call.model_dump(exclude={"index"}, exclude_none=True)],
        }
    )
    messages += [said, {"role": "tool", "tool_call_id": call.id, "content": '{"sky": "sunny"}'}]
    reply = client.chat.completions.create(model="fake", messages=messages, tools=OPENAI_TOOLS)
    assert reply.choices[0].finish_reason == "stop"
    assert reply.choices[0].message.content == FINAL
    assert reply.choices[0].message.tool_calls is None
    assert reply.choices[0].message.reasoning_content == "The tool says sunny."


@pytest.mark.parametrize("stream", [False, True])
def test_anthropic_agent_loop(agent_server, stream):
    fmt, served = agent_server
    client = anthropic_client(served)
    messages = [{"role": "user", "content": "What is the weather in Paris?"}]
    request = dict(model="fake", max_tokens=200, tools=ANTHROPIC_TOOLS, messages=messages)
    if stream:
        with client.messages.stream(**request) as events:
            kinds = [e.type for e in events]
            reply = events.get_final_message()
        assert kinds[0] == "message_start" and kinds[-1] == "message_stop"
        assert "content_block_start" in kinds and "message_delta" in kinds
    else:
        reply = client.messages.create(**request)
    assert reply.stop_reason == "tool_use"
    assert [b.type for b in reply.content] == ["thinking", "text", "tool_use"]
    thinking, text, call = reply.content
    assert thinking.thinking == "I need the weather."
    assert text.text.strip() == "Let me look."
    _clean(text.text)
    assert call.name == "get_weather" and call.input == ARGS and call.id.startswith("toolu_")

    messages += [
        {"role": "assistant", "content": [b.model_dump(exclude_none=True) for b in reply.content]},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": call.id, "content": "sunny"}]},
    ]
    final = client.messages.create(**{**request, "messages": messages})
    assert final.stop_reason == "end_turn"
    assert [(b.type, getattr(b, "text", None) or getattr(b, "thinking", None)) for b in final.content] == [
        ("thinking", "The tool says sunny."),
        ("text", FINAL),
    ]


def test_without_tools_the_text_is_left_alone(agent_server):
    """No `tools` in the request: nothing is parsed (the reply text is the model's)."""
    fmt, served = agent_server
    if fmt == "harmony":
        pytest.skip("harmony calls are split by the engine, tools or not")
    reply = served.client().chat.completions.create(model="fake", messages=[{"role": "user", "content": "hi"}])
    assert reply.choices[0].finish_reason == "stop" and reply.choices[0].message.tool_calls is None
