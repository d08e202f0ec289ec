"""Split a reasoning model's thinking from its answer while the text streams.

Reasoning models (Qwen3, DeepSeek-R1, GLM, ...) write `<think> ... </think>`
before the answer. Which markers a model uses is read from its tokenizer (mlx-lm's
TokenizerWrapper infers `think_start` / `think_end` from the vocabulary), never
from a list of model names. Some chat templates open the think block in the
prompt itself (the generation prompt ends with `<think>\\n`), so the model's
first tokens are already thinking: `prompt_opens_thinking` tells from the
rendered prompt.

Plain Python: no MLX import, so UIs, the fake engine and a server can use it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

THINKING = "thinking"
ANSWER = "answer"

Part = tuple[str, str]  # (THINKING | ANSWER, text)


@dataclass(frozen=True)
class ThinkMarkers:
    start: str
    end: str


def markers_from_tokenizer(tokenizer: Any) -> ThinkMarkers | None:
    """The think markers mlx-lm found in the tokenizer's vocabulary, or None."""
    if not getattr(tokenizer, "has_thinking", False):
        return None
    start, end = getattr(tokenizer, "think_start", None), getattr(tokenizer, "think_end", None)
    return ThinkMarkers(start, end) if start and end else None


def markers_of(think_start: str | None, think_end: str | None) -> ThinkMarkers | None:
    """ThinkMarkers from ModelInfo's two fields (None when the model does not think)."""
    return ThinkMarkers(think_start, think_end) if think_start and think_end else None


def prompt_opens_thinking(prompt: str, markers: ThinkMarkers | None) -> bool:
    """True when the rendered prompt ends inside an open think block, so the
    model's first tokens are thinking (the same rule mlx-lm's server uses)."""
    if markers is None:
        return False
    return prompt.rfind(markers.start) > prompt.rfind(markers.end)


class ReasoningSplitter:
    """Fed text deltas in order, yields (kind, text) parts in order.

    Robust to markers split across deltas: a tail that could be the start of
    a marker is held back until the next delta (or `finish`) decides. The
    markers themselves are dropped, and so is the whitespace next to them
    (the newline after `<think>`, the blank line after `</think>`). Without
    markers every delta is passed through unchanged as answer text.
    """

    def __init__(self, markers: ThinkMarkers | None, *, opened: bool = False) -> None:
        self.markers = markers
        self.kind = THINKING if (markers is not None and opened) else ANSWER
        self._buffer = ""
        self._after_marker = self.kind == THINKING

    def feed(self, text: str) -> list[Part]:
        if self.markers is None:
            return [(ANSWER, text)] if text else []
        self._buffer += text
        parts: list[Part] = []
        while True:
            if self._after_marker:
                self._buffer = self._buffer.lstrip()
                if not self._buffer:
                    break
                self._after_marker = False
            marker = self.markers.end if self.kind == THINKING else self.markers.start
            at = self._buffer.find(marker)
            if at >= 0:
                piece = self._buffer[:at]
                _add(parts, self.kind, piece.rstrip() if self.kind == THINKING else piece)
                self._buffer = self._buffer[at + len(marker) :]
                self.kind = ANSWER if self.kind == THINKING else THINKING
                self._after_marker = True
                continue
            ready = len(self._buffer) - _partial_marker_length(self._buffer, marker)
            if self.kind == THINKING:  # whitespace before `</think>` is dropped, so hold it
                ready = len(self._buffer[:ready].rstrip())
            _add(parts, self.kind, self._buffer[:ready])
            self._buffer = self._buffer[ready:]
            break
        return parts

    def finish(self) -> list[Part]:
        """The held-back tail, once the stream has ended."""
        tail, self._buffer = self._buffer, ""
        parts: list[Part] = []
        _add(parts, self.kind, tail.rstrip() if self.kind == THINKING else tail)
        return parts


def split_text(text: str, markers: ThinkMarkers | None, *, opened: bool = False) -> tuple[str, str]:
    """(thinking, answer) of a whole text: the splitter run over it at once."""
    splitter = ReasoningSplitter(markers, opened=opened)
    thinking: list[str] = []
    answer: list[str] = []
    for kind, piece in splitter.feed(text) + splitter.finish():
        (thinking if kind == THINKING else answer).append(piece)
    return "".join(thinking), "".join(answer)


def _add(parts: list[Part], kind: str, text: str) -> None:
    if not text:
        return
    if parts and parts[-1][0] == kind:
        parts[-1] = (kind, parts[-1][1] + text)
    else:
        parts.append((kind, text))


def _partial_marker_length(text: str, marker: str) -> int:
    """Length of the longest tail of `text` that is a proper prefix of `marker`."""
    for size in range(min(len(marker) - 1, len(text)), 0, -1):
        if marker.startswith(text[-size:]):
            return size
    return 0


# ---- what the chat template does with thinking ---------------------------------

_PROBE_USER = "outlier-probe-question"
_PROBE_THINKING = "outlier-probe-reasoning"


def _render(tokenizer: Any, messages: list[dict], **kwargs: Any) -> str | None:
    try:
        return tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False, **kwargs)
    except Exception:  # a template that rejects the probe simply does not take the switch
        return None


def template_takes_enable_thinking(tokenizer: Any) -> bool:
    """Whether `enable_thinking` changes the rendered prompt (tried, not guessed)."""
    if not getattr(tokenizer, "has_chat_template", False):
        return False
    probe = [{"role": "user", "content": _PROBE_USER}]
    on = _render(tokenizer, probe, enable_thinking=True)
    off = _render(tokenizer, probe, enable_thinking=False)
    return on is not None and off is not None and on != off


def template_keeps_thinking(tokenizer: Any) -> bool:
    """Whether the template renders an earlier answer's `reasoning_content` back
    into the prompt; only then is stored thinking sent to the model again."""
    if not getattr(tokenizer, "has_chat_template", False):
        return False
    probe = [
        {"role": "user", "content": _PROBE_USER},
        {"role": "assistant", "content": "answer", "reasoning_content": _PROBE_THINKING},
        {"role": "user", "content": _PROBE_USER},
    ]
    rendered = _render(tokenizer, probe)
    return rendered is not None and _PROBE_THINKING in rendered


def reasoning_fields(tokenizer: Any) -> dict:
    """The ModelInfo fields about thinking, read from a loaded tokenizer."""
    markers = markers_from_tokenizer(tokenizer)
    return dict(
        think_start=markers.start if markers else None,
        think_end=markers.end if markers else None,
        template_takes_enable_thinking=template_takes_enable_thinking(tokenizer),
        template_keeps_thinking=template_keeps_thinking(tokenizer),
    )
