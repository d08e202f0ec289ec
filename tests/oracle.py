"""Run a model step by step and collect logits, the same way for the oracle and the engine."""

from __future__ import annotations

import mlx.core as mx
from mlx_lm.models.cache import make_prompt_cache

PROMPT = "The quick brown fox jumps over the lazy dog. Streaming experts from disk! " * 2


def greedy_run(model, tokenizer, steps: int = 30, prompt: str = PROMPT, after_step=None):
    """Prefill the prompt, then `steps` greedy decode steps; returns (tokens, logits[steps+1, V]).
    after_step(): called after each decode step (the engine's per-token hook, in tests)."""
    cache = make_prompt_cache(model)
    ids = mx.array([tokenizer.encode(prompt)])
    logits = model(ids, cache=cache)[:, -1, :]
    tokens, rows = [], [logits]
    for _ in range(steps):
        token = int(mx.argmax(logits, axis=-1).item())
        tokens.append(token)
        logits = model(mx.array([[token]]), cache=cache)[:, -1, :]
        rows.append(logits)
        if after_step is not None:
            mx.eval(logits)
            after_step()
    out = mx.concatenate(rows)
    mx.eval(out)
    return tokens, out


def oracle_answer(path, prompt_ids_of, max_tokens: int, dtype=mx.float32, step: int | None = None) -> list[int]:
    """mlx-lm's greedy answer, fully resident (half floats cast to dtype), stopping at EOS
    like the engine. prompt_ids_of(tokenizer) -> the prompt's token ids; step: prefill in
    chunks of this many."""
    from checkpoints import resident_oracle

    model, tok = resident_oracle(path, dtype)
    cache = make_prompt_cache(model)
    ids = prompt_ids_of(tok)
    step = step or len(ids)
    for start in range(0, len(ids), step):
        logits = model(mx.array([ids[start : start + step]]), cache=cache)[:, -1, :]
    out = []
    for _ in range(max_tokens):
        token = int(mx.argmax(logits, axis=-1).item())
        if token in tok.eos_token_ids:
            break
        out.append(token)
        logits = model(mx.array([[token]]), cache=cache)[:, -1, :]
    return out
