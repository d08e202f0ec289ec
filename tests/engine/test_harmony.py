"""gpt-oss harmony channels split into thinking, answer and tool calls (engine.harmony), and
mlx-lm's tool parsers found by name without importing mlx_lm (engine.tool_parsers)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from engine.api import GenerationParams, TextDelta
from engine.fake import FakeEngine
from engine.harmony import HarmonySplitter, answer_splitter
from engine.reasoning import ANSWER, THINKING, ReasoningSplitter
from engine.tool_parsers import available, load_parser

REPLY = (
    "<|channel|>analysis<|message|>The user greets me. Answer kindly.<|end|>"
    "<|start|>assistant<|channel|>final<|message|>Hello there!<|return|>"
)
CALL = (
    "<|channel|>analysis<|message|>Need the weather.<|end|>"
    "<|start|>assistant<|channel|>commentary to=functions.get_weather <|constrain|>json"
    '<|message|>{"city": "Paris"}<|call|>'
)


def split(text: str, cuts: list[int]) -> tuple[str, str]:
    """(thinking, answer) of text fed in pieces cut at `cuts`."""
    splitter = HarmonySplitter()
    bounds = [0, *cuts, len(text)]
    parts = [p for a, b in zip(bounds, bounds[1:]) for p in splitter.feed(text[a:b])] + splitter.finish()
    return "".join(t for k, t in parts if k == THINKING), "".join(t for k, t in parts if k == ANSWER)


@pytest.mark.parametrize("cut", range(0, len(REPLY) + 1, 3))
def test_channels_split_wherever_the_stream_breaks(cut):
    assert split(REPLY, [cut]) == ("The user greets me. Answer kindly.", "Hello there!")


def test_one_character_at_a_time():
    assert split(REPLY, list(range(1, len(REPLY)))) == ("The user greets me. Answer kindly.", "Hello there!")


@pytest.mark.parametrize("cut", range(0, len(CALL) + 1, 5))
def test_a_call_to_a_recipient_becomes_one_json_tools_call(cut):
    thinking, answer = split(CALL, [cut])
    assert thinking == "Need the weather."
    assert answer.startswith("<tool_call>") and answer.endswith("</tool_call>")
    call = load_parser("json_tools").parse(answer[len("<tool_call>") : -len("</tool_call>")], None)
    assert call == {"name": "get_weather", "arguments": {"city": "Paris"}}


def test_recipient_in_the_role_header_and_an_unclosed_call():
    text = '<|start|>assistant to=functions.lookup<|channel|>commentary json<|message|>{"q": "x"}'
    _, answer = split(text, [])
    assert json.loads(answer[len("<tool_call>") : -len("</tool_call>")]) == {"name": "lookup", "arguments": {"q": "x"}}


def test_commentary_without_recipient_is_answer_and_plain_text_passes_through():
    assert split("<|channel|>commentary<|message|>Checking.<|end|>", []) == ("", "Checking.")
    assert split("just words, no channels", [5]) == ("", "just words, no channels")
    long_plain = "x" * 600
    assert split(long_plain, [100, 300]) == ("", long_plain)


def test_answer_splitter_picks_harmony_only_for_harmony_models():
    assert isinstance(answer_splitter(None, None, True, "", True), HarmonySplitter)
    assert isinstance(answer_splitter("<think>", "</think>", False, "", True), ReasoningSplitter)
    assert isinstance(answer_splitter(None, None, True, "", False), ReasoningSplitter)  # raw prompts


def test_fake_engine_streams_a_harmony_reply_as_thinking_and_answer():
    engine = FakeEngine(script=[REPLY])
    engine.load("fake").result()
    events = [
        e for e in engine.generate([{"role": "user", "content": "hi"}], GenerationParams()) if isinstance(e, TextDelta)
    ]
    assert "".join(e.text for e in events if e.kind == THINKING) == "The user greets me. Answer kindly."
    assert "".join(e.text for e in events if e.kind == ANSWER) == "Hello there!"
    assert engine.snapshot().model.tool_parser == "json_tools"


@pytest.mark.parametrize("name", ["json_tools", "qwen3_coder", "pythonic", "mistral", "glm47", "laguna"])
def test_mlx_lm_parsers_load_by_name(name):
    parser = load_parser(name)
    assert parser.start and callable(parser.parse)
    assert name in available()


def test_unknown_parser_is_a_value_error():
    with pytest.raises(ValueError):
        load_parser("no_such_parser")
    with pytest.raises(ValueError):
        load_parser("../etc")


def test_parsers_load_without_importing_mlx():
    code = (
        "import sys; from engine.tool_parsers import load_parser; "
        "p = load_parser('qwen3_coder'); "
        "print(p.parse('<function=f>\\n<parameter=a>\\n1\\n</parameter>\\n</function>', None)); "
        "print('mlx_lm' in sys.modules, 'mlx' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.splitlines() == ["{'name': 'f', 'arguments': {'a': '1'}}", "False False"]


@pytest.fixture(scope="module")
def harmony_checkpoint(tmp_path_factory):
    from harmony_checkpoint import write_harmony_checkpoint

    return write_harmony_checkpoint(tmp_path_factory.mktemp("gpt-oss-harmony"))


def test_harmony_markers_through_a_gpt_oss_tokenizer(harmony_checkpoint):
    """The channel markers are special tokens; streamed through mlx-lm's detokenizer token by
    token (as the engine decodes) they still split into thinking, answer and a tool call."""
    from mlx_lm.utils import load_tokenizer

    from engine.tool_parsers import tool_fields

    tok = load_tokenizer(harmony_checkpoint)
    assert tool_fields(tok) == {"tool_parser": "json_tools", "harmony": True}
    for text, expected in ((REPLY, ("The user greets me. Answer kindly.", "Hello there!")), (CALL, None)):
        ids = tok.encode(text, add_special_tokens=False)
        assert tok.convert_tokens_to_ids("<|channel|>") in ids  # one token each, not bytes
        splitter, detok, parts = HarmonySplitter(), tok.detokenizer, []
        detok.reset()
        for token in ids:
            detok.add_token(token)
            parts += splitter.feed(detok.last_segment)
        detok.finalize()
        parts += splitter.feed(detok.last_segment) + splitter.finish()
        thinking = "".join(t for k, t in parts if k == THINKING)
        answer = "".join(t for k, t in parts if k == ANSWER)
        if expected:
            assert (thinking, answer) == expected
        else:
            assert thinking == "Need the weather."
            assert json.loads(answer[len("<tool_call>") : -len("</tool_call>")])["name"] == "get_weather"


def test_engine_reports_harmony_for_a_gpt_oss_checkpoint(harmony_checkpoint):
    from engine import Engine

    engine = Engine()
    try:
        info = engine.load(str(harmony_checkpoint)).result(timeout=300)
        assert (info.harmony, info.tool_parser, info.think_start) == (True, "json_tools", None)
        # <|start|> user <|message|> hi <|end|> <|start|> assistant: 4 special tokens + 15 bytes
        assert engine.count_tokens([{"role": "user", "content": "hi"}]) == 4 + len("userhiassistant")
    finally:
        engine.close()
