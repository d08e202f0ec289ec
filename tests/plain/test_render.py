"""The streaming renderer: prose at once, code blocks highlighted when their fence closes."""

from __future__ import annotations

import re

from outlier_tui.plain.render import StreamRenderer, highlight_code, pygments_style, wants_color

ANSI = re.compile(r"\x1b\[[0-9;]*m")


class Recorder:
    def __init__(self) -> None:
        self.writes: list[str] = []

    def __call__(self, text: str) -> None:
        self.writes.append(text)

    @property
    def text(self) -> str:
        return "".join(self.writes)

    @property
    def plain(self) -> str:
        return ANSI.sub("", self.text)


def feed_all(renderer: StreamRenderer, pieces) -> None:
    for piece in pieces:
        renderer.feed(piece)
    renderer.finish()


def test_prose_streams_immediately():
    rec = Recorder()
    r = StreamRenderer(rec, color=True)
    r.feed("Hel")
    assert rec.text == "Hel"
    r.feed("lo wor")
    assert rec.text == "Hello wor"
    r.feed("ld\nNext")
    assert rec.text == "Hello world\nNext"


def test_code_block_is_held_then_highlighted():
    rec = Recorder()
    r = StreamRenderer(rec, color=True)
    r.feed("Look:\n`")
    assert rec.text == "Look:\n"  # a backtick at line start might open a fence: held
    r.feed("``py")
    r.feed("thon\ndef f(x):\n    return x\n")
    assert "def f" not in rec.plain  # inside the block: nothing printed yet
    assert "```python" in rec.plain  # the opening fence is shown at once
    r.feed("```\nafter")
    assert "def f(x):\n    return x\n```\nafter" in rec.plain
    code_part = rec.text.split("```python")[1]
    assert ANSI.search(code_part.split("after")[0])  # coloured
    r.finish()
    assert rec.plain == "Look:\n```python\ndef f(x):\n    return x\n```\nafter"


def test_fence_split_into_single_characters_and_tildes():
    source = "a\n~~~\nx = 1\n~~~\nb ``` not a fence\n"
    rec = Recorder()
    feed_all(StreamRenderer(rec, color=True), list(source))
    assert rec.plain == source


def test_inline_triple_backticks_are_prose():
    rec = Recorder()
    r = StreamRenderer(rec, color=True)
    r.feed("```inline``` stays prose\n")
    assert rec.text == "```inline``` stays prose\n"


def test_unclosed_block_is_flushed_at_finish():
    rec = Recorder()
    feed_all(StreamRenderer(rec, color=True), ["```\nprint('cut')\nprin"])
    assert rec.plain == "```\nprint('cut')\nprin\n"


def test_longer_fence_needs_a_matching_close():
    source = "````md\n```\ninner\n```\n````\n"
    rec = Recorder()
    feed_all(StreamRenderer(rec, color=True), [source])
    assert rec.plain == source


def test_no_colour_is_a_byte_exact_passthrough():
    source = "x\n```python\ndef f(): pass\n```\ny"
    rec = Recorder()
    r = StreamRenderer(rec, color=False)
    r.feed(source[:9])
    assert rec.text == source[:9]  # streams even inside a fence
    r.feed(source[9:])
    r.finish()
    assert rec.text == source and not ANSI.search(rec.text)


def test_highlight_unknown_language_falls_back():
    assert ANSI.sub("", highlight_code("just text\n", "no-such-language")) == "just text\n"


def test_style_and_colour_detection(monkeypatch):
    assert pygments_style("monokai") == "monokai"
    assert pygments_style("outlier-dark") == "monokai"
    assert pygments_style(None) == "monokai"

    class Tty:
        def isatty(self) -> bool:
            return True

    monkeypatch.delenv("NO_COLOR", raising=False)
    monkeypatch.setenv("TERM", "xterm-256color")
    assert wants_color(Tty())
    monkeypatch.setenv("NO_COLOR", "1")
    assert not wants_color(Tty())
    monkeypatch.delenv("NO_COLOR")
    monkeypatch.setenv("TERM", "dumb")
    assert not wants_color(Tty())
