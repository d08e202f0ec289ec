"""The fixed workload every configuration runs: one coding question, greedy,
a fixed token budget. Same prompt, same params everywhere, so figures from
different configurations of one run are comparable."""

from __future__ import annotations

from engine.api import GenerationParams, Message

PROMPT = "Write a Python function that reverses a linked list, and explain it."


def messages() -> list[Message]:
    return [{"role": "user", "content": PROMPT}]


def params(tokens: int) -> GenerationParams:
    """Greedy decoding; stops after `tokens` tokens (or at EOS, which is counted)."""
    return GenerationParams(max_tokens=tokens, temperature=0.0, seed=0)


def parse_budgets(text: str) -> list[float]:
    """'100,50,25,10' -> [100.0, 50.0, 25.0, 10.0] (percent of all expert bytes)."""
    out = []
    for part in text.split(","):
        part = part.strip().rstrip("%")
        if not part:
            continue
        value = float(part)
        if not 0 < value <= 100:
            raise ValueError(f"budget {part}% is outside (0, 100]")
        out.append(value)
    if not out:
        raise ValueError("no budgets given")
    return out
