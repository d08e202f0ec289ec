"""gpt-oss's harmony channels, split from the decoded text while it streams.

gpt-oss answers in messages with a header and a body:
`<|channel|>analysis<|message|>…<|end|><|start|>assistant<|channel|>final<|message|>…<|return|>`.
The `analysis` channel is thinking, `final` is the answer, and a message with a
recipient (`<|channel|>commentary to=functions.get_weather <|constrain|>json<|message|>{…}<|call|>`)
is a tool call. The `openai-harmony` package parses this from token ids, but it
downloads its vocabulary at run time, which an offline machine cannot; the
channel markers are whole tokens the detokenizer writes out as text, so the
decoded text is parsed here instead.

Tool calls leave the splitter as answer text in the `<tool_call>{"name": …,
"arguments": …}</tool_call>` form that mlx-lm's json_tools parser reads, so the
server handles a gpt-oss call exactly like a Qwen one (ModelInfo.tool_parser).

Plain Python: no MLX import (the fake engine and the UIs use it too).
"""

from __future__ import annotations

import json
import re
from typing import Any

from engine.reasoning import ANSWER, THINKING, Part, ReasoningSplitter, markers_of, prompt_opens_thinking

CHANNEL, MESSAGE, START = "<|channel|>", "<|message|>", "<|start|>"
_ENDS = ("<|end|>", "<|return|>", "<|call|>", START)  # what ends a message body
TOOL_PARSER = "json_tools"  # the form tool calls leave the splitter in
_LONGEST_HEADER = 512  # characters: text with no <|message|> by then is not a harmony header
_CHANNEL_RE = re.compile(r"<\|channel\|>\s*([\w-]+)")
_RECIPIENT_RE = re.compile(r"to=([^\s<]+)")


def is_harmony(tokenizer: Any) -> bool:
    """True when the vocabulary has harmony's message markers (gpt-oss)."""
    try:
        vocab = tokenizer.get_vocab()
    except Exception:  # a tokenizer without a vocabulary to show does not speak harmony
        return False
    return all(marker in vocab for marker in (CHANNEL, MESSAGE, START, "<|end|>"))


def looks_like_harmony(text: str) -> bool:
    """Whether a whole scripted reply (the fake engine's) is written in harmony channels."""
    return CHANNEL in text and MESSAGE in text


def tool_call_text(recipient: str, body: str) -> str:
    """A harmony call as json_tools text: `functions.get_weather` + `{"city": …}`."""
    name = recipient.removeprefix("functions.")
    try:
        arguments: Any = json.loads(body)
    except json.JSONDecodeError:
        arguments = body.strip()  # the model wrote no JSON: hand the text on as the arguments
    return "<tool_call>" + json.dumps({"name": name, "arguments": arguments}, ensure_ascii=False) + "</tool_call>"


class HarmonySplitter:
    """Fed decoded text in order, yields (THINKING | ANSWER, text) parts like ReasoningSplitter.

    Markers split across deltas are held back until the next delta decides. A
    tool call's body is held whole and leaves as one answer part at its end.
    Text that never forms a header (a model that ignores the format) passes
    through as answer text instead of vanishing.
    """

    def __init__(self) -> None:
        self._buffer = ""
        self._in_header = True  # the prompt ends with `<|start|>assistant`: a header comes first
        self._plain = False  # gave up on headers: everything is answer text
        self._kind = ANSWER
        self._recipient: str | None = None
        self._call = ""

    def feed(self, text: str) -> list[Part]:
        self._buffer += text
        parts: list[Part] = []
        while self._buffer:
            if self._plain:
                _add(parts, ANSWER, self._buffer)
                self._buffer = ""
            elif self._in_header:
                if not self._read_header(parts):
                    break
            elif not self._read_body(parts):
                break
        return parts

    def finish(self) -> list[Part]:
        """What is held back, once the stream has ended (an unclosed call still counts)."""
        parts: list[Part] = []
        if self._in_header and not self._plain:
            if "<|" not in self._buffer:
                _add(parts, ANSWER, self._buffer)
        elif self._recipient is not None:
            self._call += self._buffer
            _add(parts, ANSWER, tool_call_text(self._recipient, self._call))
        else:
            _add(parts, self._kind, self._buffer)
        self._buffer, self._call, self._recipient = "", "", None
        return parts

    def _read_header(self, parts: list[Part]) -> bool:
        at = self._buffer.find(MESSAGE)
        if at < 0:
            if len(self._buffer) > _LONGEST_HEADER and CHANNEL not in self._buffer:
                self._plain = True
                return True
            return False
        header, self._buffer = self._buffer[:at], self._buffer[at + len(MESSAGE) :]
        channel = _CHANNEL_RE.search(header)
        recipient = _RECIPIENT_RE.search(header)
        self._kind = THINKING if channel and channel.group(1) == "analysis" else ANSWER
        self._recipient = recipient.group(1) if recipient else None
        self._in_header = False
        return True

    def _read_body(self, parts: list[Part]) -> bool:
        ends = [(i, m) for m in _ENDS if (i := self._buffer.find(m)) >= 0]
        if ends:
            at, marker = min(ends)
            body = self._buffer[:at]
            self._buffer = self._buffer[at + (0 if marker == START else len(marker)) :]
            if self._recipient is not None:
                _add(parts, ANSWER, tool_call_text(self._recipient, self._call + body))
                self._call, self._recipient = "", None
            else:
                _add(parts, self._kind, body)
            self._in_header = True
            return True
        ready = len(self._buffer) - max(_partial(self._buffer, m) for m in _ENDS)
        if self._recipient is not None:
            self._call += self._buffer[:ready]
        else:
            _add(parts, self._kind, self._buffer[:ready])
        self._buffer = self._buffer[ready:]
        return False


def answer_splitter(
    think_start: str | None, think_end: str | None, harmony: bool, prompt: str, chat_template: bool
) -> HarmonySplitter | ReasoningSplitter:
    """The splitter for a model's answer: harmony channels (gpt-oss), or think markers."""
    if harmony and chat_template:
        return HarmonySplitter()
    markers = markers_of(think_start, think_end)
    return ReasoningSplitter(markers, opened=chat_template and prompt_opens_thinking(prompt, markers))


def _add(parts: list[Part], kind: str, text: str) -> None:
    if not text:
        return
    if parts and parts[-1][0] == kind:
        parts[-1] = (kind, parts[-1][1] + text)
    else:
        parts.append((kind, text))


def _partial(text: str, marker: str) -> int:
    """Length of the longest tail of `text` that is a proper prefix of `marker`."""
    for size in range(min(len(marker) - 1, len(text)), 0, -1):
        if marker.startswith(text[-size:]):
            return size
    return 0
