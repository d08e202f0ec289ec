"""Thinking split from the answer as it streams, by the tokenizer's think markers."""

import itertools

import pytest
from thinking_checkpoint import oracle_split

from engine import Engine, GenerationDone, GenerationParams, TextDelta
from engine.fake import FakeEngine
from engine.reasoning import (
    ANSWER,
    THINKING,
    ReasoningSplitter,
    ThinkMarkers,
    prompt_opens_thinking,
    split_text,
)

MARKERS = ThinkMarkers("<think>", "</think>")
TEXT = "<think>\nLet me see: 2 < 3 and </th is not a tag.\n</think>\n\nThe answer is <b>2</b>."
THINKING_TEXT = "Let me see: 2 < 3 and </th is not a tag."
ANSWER_TEXT = "The answer is <b>2</b>."


def _run(splitter, deltas):
    parts = [p for d in deltas for p in splitter.feed(d)] + splitter.finish()
    joined = {THINKING: "", ANSWER: ""}
    for kind, text in parts:
        joined[kind] += text
    return parts, joined[THINKING], joined[ANSWER]


def test_whole_text_splits_and_drops_markers_and_their_whitespace():
    assert split_text(TEXT, MARKERS) == (THINKING_TEXT, ANSWER_TEXT)


@pytest.mark.parametrize("cut", range(1, len(TEXT)))
def test_any_two_deltas_give_the_same_split(cut):
    _, thinking, answer = _run(ReasoningSplitter(MARKERS), [TEXT[:cut], TEXT[cut:]])
    assert (thinking, answer) == (THINKING_TEXT, ANSWER_TEXT)


def test_character_deltas_stream_in_order_and_never_show_a_marker_piece():
    splitter = ReasoningSplitter(MARKERS)
    seen = []
    for ch in TEXT:
        for kind, text in splitter.feed(ch):
            seen.append((kind, text))
            assert "<think" not in text and "</think" not in "".join(t for _, t in seen)
    seen += splitter.finish()
    kinds = [k for k, _ in itertools.groupby(k for k, _ in seen)]
    assert kinds == [THINKING, ANSWER]


def test_thinking_streams_before_the_end_marker_arrives():
    splitter = ReasoningSplitter(MARKERS)
    assert splitter.feed("<think>\nfirst") == [(THINKING, "first")]
    assert splitter.feed(" step  ") == [(THINKING, " step")]  # trailing space held back
    assert splitter.feed("more") == [(THINKING, "  more")]


def test_prompt_that_opened_the_block_starts_in_thinking():
    _, thinking, answer = _run(ReasoningSplitter(MARKERS, opened=True), ["\nhmm</thi", "nk>\n\nHi"])
    assert (thinking, answer) == ("hmm", "Hi")


def test_without_markers_text_passes_through_verbatim():
    splitter = ReasoningSplitter(None)
    assert splitter.feed("<think> x ") == [(ANSWER, "<think> x ")]
    assert splitter.finish() == []


def test_plain_answer_with_markers_known_is_unchanged():
    text = "No thinking here, just a < sign and </b>.\n"
    assert _run(ReasoningSplitter(MARKERS), list(text))[1:] == ("", text)


def test_unfinished_thinking_is_flushed_at_the_end():
    assert split_text("<think>still going <thi", MARKERS) == ("still going <thi", "")


def test_multi_token_markers():
    markers = ThinkMarkers("<|channel>thought", "<channel|>")
    text = "<|channel>thought plan<channel|>done"
    for cut in range(1, len(text)):
        assert _run(ReasoningSplitter(markers), [text[:cut], text[cut:]])[1:] == ("plan", "done")


def test_prompt_opens_thinking_looks_at_the_last_marker():
    assert prompt_opens_thinking("<|im_start|>assistant\n<think>\n", MARKERS)
    assert not prompt_opens_thinking("assistant\n<think>\n\n</think>\n\n", MARKERS)
    assert not prompt_opens_thinking("<think>old</think> user: hi\nassistant\n", MARKERS)
    assert not prompt_opens_thinking("<think>\n", None)


# ---- the real engine, on a tiny checkpoint whose template thinks ----------------

GREEDY = GenerationParams(max_tokens=16, temperature=0.0)
QUESTION = [{"role": "user", "content": "Why is the sky blue?"}]


@pytest.fixture(scope="module")
def thinking_path(tmp_path_factory):
    from thinking_checkpoint import write_thinking_checkpoint

    return write_thinking_checkpoint(tmp_path_factory.mktemp("thinking"))


@pytest.fixture(scope="module")
def engine(thinking_path):
    eng = Engine()
    eng.load(str(thinking_path)).result()
    yield eng
    eng.close()


def test_model_info_reports_the_templates_thinking(engine):
    info = engine.snapshot().model
    assert (info.think_start, info.think_end) == ("<think>", "</think>")
    assert info.template_takes_enable_thinking and not info.template_keeps_thinking


@pytest.mark.parametrize("enable", [True, False])
def test_engine_splits_like_the_oracle_text(engine, thinking_path, enable):
    events = list(
        engine.generate(
            QUESTION, GenerationParams(max_tokens=GREEDY.max_tokens, temperature=0.0, enable_thinking=enable)
        )
    )
    assert isinstance(events[-1], GenerationDone)
    deltas = [e for e in events if isinstance(e, TextDelta)]
    thinking = "".join(d.text for d in deltas if d.kind == THINKING)
    answer = "".join(d.text for d in deltas if d.kind == ANSWER)
    tokens, *expected = oracle_split(thinking_path, QUESTION, enable, GREEDY.max_tokens)
    assert list(events[-1].stats.tokens) == tokens
    assert [thinking, answer] == expected
    assert (thinking != "") == enable  # the opened block makes everything thinking here


def test_template_that_keeps_thinking_is_detected(tmp_path):
    from checkpoints import write_tokenizer
    from mlx_lm.utils import load_tokenizer
    from thinking_checkpoint import KEEPING_TEMPLATE, add_think_tokens

    from engine.reasoning import reasoning_fields

    write_tokenizer(tmp_path)
    fields = reasoning_fields(load_tokenizer(add_think_tokens(tmp_path, KEEPING_TEMPLATE)))
    assert fields["template_keeps_thinking"] and not fields["template_takes_enable_thinking"]


def test_fake_engine_streams_thinking_and_drops_it_when_told_not_to_think():
    fake = FakeEngine(script=[TEXT])
    fake.load("/fake").result()
    on = [e for e in fake.generate(QUESTION) if isinstance(e, TextDelta)]
    assert "".join(e.text for e in on if e.kind == THINKING) == THINKING_TEXT
    assert "".join(e.text for e in on if e.kind == ANSWER) == ANSWER_TEXT
    off = [e for e in fake.generate(QUESTION, GenerationParams(enable_thinking=False)) if isinstance(e, TextDelta)]
    assert {e.kind for e in off} == {ANSWER}
