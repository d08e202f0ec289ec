"""Run a model step by step and collect logits, the same way for the oracle and the engine."""

from __future__ import annotations

import mlx.core as mx
from mlx_lm.models.cache import make_prompt_cache

PROMPT = "The quick brown fox jumps over the lazy dog. Streaming experts from disk! " * 2


def greedy_run(model, tokenizer, steps: int = 30, prompt: str = PROMPT):
    """Prefill the prompt, then `steps` greedy decode steps; returns (tokens, logits[steps+1, V])."""
    cache = make_prompt_cache(model)
    ids = mx.array([tokenizer.encode(prompt)])
    logits = model(ids, cache=cache)[:, -1, :]
    tokens, rows = [], [logits]
    for _ in range(steps):
        token = int(mx.argmax(logits, axis=-1).item())
        tokens.append(token)
        logits = model(mx.array([[token]]), cache=cache)[:, -1, :]
        rows.append(logits)
    out = mx.concatenate(rows)
    mx.eval(out)
    return tokens, out
