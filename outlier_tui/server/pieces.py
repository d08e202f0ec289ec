"""What an answer streams, between the engine's events and an API's JSON: the answer's text
(str), the model's thinking, parsed tool calls and one Finish. Kept apart so that answering
(completion.py), tool parsing (tools.py) and the API formats share them without importing
one another."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from engine.api import GenerationStats


@dataclass(frozen=True)
class Thinking:
    text: str


@dataclass(frozen=True)
class Finish:
    reason: str  # "stop" | "length" | "tool_calls"
    stats: GenerationStats
    stop_sequence: str | None = None  # the one that ended the answer (Anthropic reports it)


Piece = str | Thinking | Finish


@dataclass(frozen=True)
class ToolCall:
    """One parsed call: `arguments` is a JSON text (OpenAI's form; Anthropic's `input` is its value)."""

    id: str
    name: str
    arguments: str

    @property
    def input(self) -> Any:
        try:
            return json.loads(self.arguments)
        except json.JSONDecodeError:
            return {}
