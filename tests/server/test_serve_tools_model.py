"""Tools through a real tiny checkpoint whose chat template renders them (json_tools, as mlx-lm
infers it), on both APIs: the prompt is the template's with the tools, an earlier call and its
result, and the answer equals mlx-lm's greedy answer on that prompt (the oracle); plain Anthropic
answers equal `outlier generate`'s; two agents share one server."""

from __future__ import annotations

import threading

import pytest
from fake_serve import anthropic_client
from serve_helpers import start_outlier_serve, stop

TOKENS = 12
SYSTEM = "You are a careful assistant."
WEATHER = {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}
OPENAI_TOOLS = [
    {"type": "function", "function": {"name": "get_weather", "description": "Weather", "parameters": WEATHER}}
]
ANTHROPIC_TOOLS = [{"name": "get_weather", "description": "Weather", "input_schema": WEATHER}]
QUESTION = "Weather in Paris?"
# The conversation after the model called the tool, as the template takes it.
AFTER_CALL = [
    {"role": "system", "content": SYSTEM},
    {"role": "user", "content": QUESTION},
    {
        "role": "assistant",
        "content": "",
        "tool_calls": [
            {"id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": {"city": "Paris"}}}
        ],
    },
    {"role": "tool", "tool_call_id": "call_1", "content": "sunny"},
]


@pytest.fixture(scope="module")
def tools_server(tmp_path_factory):
    from tools_checkpoint import write_tools_checkpoint

    server = start_outlier_serve(write_tools_checkpoint(tmp_path_factory.mktemp("tools")))
    yield server
    assert "Traceback" not in stop(server)


def oracle(path, messages, tools=OPENAI_TOOLS) -> tuple[list[int], str, int]:
    """mlx-lm's greedy answer on the template's prompt: (tokens, text, prompt length)."""
    from mlx_lm.utils import load_tokenizer
    from oracle import oracle_answer

    prompt = {}

    def ids(tok):
        text = tok.apply_chat_template(messages, tools=tools, add_generation_prompt=True, tokenize=False)
        prompt["ids"] = tok.encode(text, add_special_tokens=False)
        return prompt["ids"]

    tokens = oracle_answer(path, ids, TOKENS)
    detok = load_tokenizer(path).detokenizer
    detok.reset()
    for token in tokens:
        detok.add_token(token)
    detok.finalize()
    return tokens, detok.text, len(prompt["ids"])


def test_first_turn_with_tools_equals_the_oracle_on_both_apis(tools_server):
    messages = [{"role": "system", "content": SYSTEM}, {"role": "user", "content": QUESTION}]
    tokens, text, prompt = oracle(tools_server.checkpoint, messages)
    reply = tools_server.client().chat.completions.create(
        model="m", messages=messages, tools=OPENAI_TOOLS, max_tokens=TOKENS, temperature=0
    )
    assert reply.choices[0].message.content == text
    assert reply.usage.completion_tokens == len(tokens) and reply.usage.prompt_tokens == prompt

    client = anthropic_client(tools_server)
    request = dict(model="m", max_tokens=TOKENS, system=SYSTEM, tools=ANTHROPIC_TOOLS, extra_body={"temperature": 0})
    answer = client.messages.create(messages=[{"role": "user", "content": QUESTION}], **request)
    assert "".join(b.text for b in answer.content if b.type == "text") == text
    assert answer.usage.output_tokens == len(tokens)
    assert answer.usage.input_tokens + answer.usage.cache_read_input_tokens == prompt
    count = client.messages.count_tokens(
        model="m", system=SYSTEM, tools=ANTHROPIC_TOOLS, messages=[{"role": "user", "content": QUESTION}]
    )
    assert count.input_tokens == prompt


def test_call_and_result_go_back_through_the_template_on_both_apis(tools_server):
    tokens, text, prompt = oracle(tools_server.checkpoint, AFTER_CALL)
    openai_messages = [
        *AFTER_CALL[:2],
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "id": "call_1",
                    "type": "function",
                    "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'},
                }
            ],
        },
        AFTER_CALL[3],
    ]
    reply = tools_server.client().chat.completions.create(
        model="m", messages=openai_messages, tools=OPENAI_TOOLS, max_tokens=TOKENS, temperature=0
    )
    assert (reply.usage.prompt_tokens, reply.usage.completion_tokens) == (prompt, len(tokens))
    assert reply.choices[0].message.content == text

    anthropic_messages = [
        {"role": "user", "content": QUESTION},
        {
            "role": "assistant",
            "content": [{"type": "tool_use", "id": "call_1", "name": "get_weather", "input": {"city": "Paris"}}],
        },
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "call_1", "content": "sunny"}]},
    ]
    client = anthropic_client(tools_server)
    with client.messages.stream(
        model="m",
        max_tokens=TOKENS,
        system=[{"type": "text", "text": SYSTEM}],
        tools=ANTHROPIC_TOOLS,
        messages=anthropic_messages,
        extra_body={"temperature": 0},
    ) as events:
        streamed = "".join(events.text_stream)
        final = events.get_final_message()
    assert streamed == text
    assert final.usage.input_tokens + final.usage.cache_read_input_tokens == prompt


def test_anthropic_plain_answer_equals_generate(served, tmp_path):
    from test_serve import generate

    text, tokens = generate(served.checkpoint, "Hello", 24, tmp_path)
    client = anthropic_client(served)
    request = dict(
        model="m", max_tokens=24, messages=[{"role": "user", "content": "Hello"}], extra_body={"temperature": 0}
    )
    reply = client.messages.create(**request)
    assert [b.type for b in reply.content] == ["text"] and reply.content[0].text == text
    assert reply.usage.output_tokens == len(tokens)
    assert reply.stop_reason == ("max_tokens" if len(tokens) == 24 else "end_turn")
    with client.messages.stream(**request) as events:
        assert "".join(events.text_stream) == text


def test_tools_for_a_model_without_tool_calling_are_refused_in_each_shape(served):
    import anthropic
    import openai

    with pytest.raises(openai.BadRequestError) as caught:
        served.client().chat.completions.create(
            model="m", messages=[{"role": "user", "content": "hi"}], tools=OPENAI_TOOLS, max_tokens=2
        )
    assert caught.value.body["code"] == "tools_not_supported"
    with pytest.raises(anthropic.BadRequestError) as refused:
        anthropic_client(served).messages.create(
            model="m", max_tokens=2, messages=[{"role": "user", "content": "hi"}], tools=ANTHROPIC_TOOLS
        )
    assert refused.value.body["error"]["type"] == "invalid_request_error"


def _agent(server, name: str, turns: list, start: threading.Barrier, results: dict) -> None:
    """Two turns of one agent (its own system prompt and tools each time), recording usage."""
    client = server.client()
    messages = [{"role": "system", "content": f"You are agent {name}. " * 8}, {"role": "user", "content": "Begin."}]
    for _turn in range(2):
        start.wait(timeout=120)
        reply = client.chat.completions.create(
            model="m", messages=messages, tools=OPENAI_TOOLS, max_tokens=TOKENS, temperature=0
        )
        turns.append((list(messages), reply.choices[0].message.content, reply.usage))
        messages += [
            {"role": "assistant", "content": reply.choices[0].message.content},
            {"role": "user", "content": "Go on."},
        ]
    results[name] = turns


@pytest.fixture(scope="module")
def two_agents(tools_server):
    """Agents A and B against one server at once: both send turn 1 together, then turn 2 together."""
    start, results = threading.Barrier(2), {}
    threads = [threading.Thread(target=_agent, args=(tools_server, n, [], start, results)) for n in "AB"]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=300)
    return results


def test_two_agents_at_once_both_finish_with_the_oracles_answers(tools_server, two_agents):
    assert sorted(two_agents) == ["A", "B"]
    for turns in two_agents.values():
        for messages, content, usage in turns:
            _, text, prompt = oracle(tools_server.checkpoint, messages)
            assert content == text
            assert usage.prompt_tokens == prompt


def test_two_agents_each_reuse_their_own_kv_prefix(two_agents):
    for turns in two_agents.values():
        (_, _, first), (_, _, second) = turns
        assert second.prompt_tokens_details.cached_tokens >= first.prompt_tokens  # turn 1's whole prompt reused
