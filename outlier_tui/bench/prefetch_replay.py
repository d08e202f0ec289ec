"""Prefetch predictors that need only expert ids, learned on a trace's first half and
measured on its second (`outlier bench --replay`, "prefetch" in its JSON).

At token t, once layer L's experts are known, each predictor names experts of layer L+1:

- `previous-token`: the experts layer L+1 used at token t-1;
- `co-activation`: the top ones by P(e' at L+1 | e at L), summed over layer L's experts at t,
  counted on the first half;
- `combined`: co-activation plus a bonus for the previous token's experts (weight chosen on
  the first half).

The engine's own guess (the next layer's router on this layer's hidden state) needs hidden
states, which a trace lacks: it cannot be measured here.

Figures: precision and recall of the guesses against layer L+1's real experts, then the
guesses read ahead through the engine's ExpertCache (plan_prefetch, the default policy, one
budget) over the second half: demand misses, speculative reads used and wasted, per token,
and what the reads cost at a given bandwidth and expert size.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from engine.cache_policy import DEFAULT_POLICY, make_policy
from engine.expert_cache import ExpertCache
from outlier_tui.bench.replay import Routing, budget_slots, token_calls

PREDICTORS = ("previous-token", "co-activation", "combined")
BONUSES = (0.05, 0.1, 0.2, 0.5, 1.0)


def coactivation(experts: np.ndarray, num_experts: int) -> np.ndarray:
    """[layers - 1, E, E]: P(expert b at layer L+1 | expert a at layer L), counted on `experts`."""
    tokens, layers, k = experts.shape
    counts = np.zeros((layers - 1, num_experts, num_experts))
    for layer in range(layers - 1):
        a = np.repeat(experts[:, layer, :], k, axis=1).reshape(-1)
        b = np.tile(experts[:, layer + 1, :], (1, k)).reshape(-1)
        np.add.at(counts[layer], (a, b), 1.0)
    used = counts.sum(axis=2, keepdims=True) / k  # tokens where a was at L
    return counts / np.maximum(used, 1.0)


def scores(name: str, experts: np.ndarray, start: int, stop: int, cond: np.ndarray, bonus: float) -> np.ndarray:
    """[tokens stop-start, layers - 1, E]: each predictor's score of layer L+1's experts at t."""
    num = cond.shape[1]
    rows = experts[start:stop]
    out = np.zeros((stop - start, experts.shape[1] - 1, num))
    if name in ("co-activation", "combined"):
        for layer in range(experts.shape[1] - 1):
            out[:, layer] = cond[layer][rows[:, layer]].sum(axis=1)
    if name in ("previous-token", "combined"):
        prev: np.ndarray = experts[max(start - 1, 0) : stop - 1]
        if start == 0:  # the first token has no previous one
            prev = np.concatenate([np.full((1, *experts.shape[1:]), -1), prev])
        weight = 1.0 if name == "previous-token" else bonus
        nxt = prev[:, 1:]  # the previous token's experts of each layer L+1
        t_idx, l_idx = np.nonzero((nxt >= 0).all(axis=-1))
        for j in range(nxt.shape[-1]):
            np.add.at(out, (t_idx, l_idx, nxt[t_idx, l_idx, j]), weight)
    return out


def guesses(score: np.ndarray, count: int) -> np.ndarray:
    """[..., count]: the `count` best-scored experts (ties: lowest id)."""
    return np.argsort(-score, axis=-1, kind="stable")[..., :count]


def precision_recall(guess: np.ndarray, score: np.ndarray, actual: np.ndarray) -> tuple[float, float]:
    """Guesses with a positive score only (previous-token guesses nothing at a prompt's first
    token of a cold start). actual: [tokens, layers - 1, k] layer L+1's real experts."""
    positive = np.take_along_axis(score, guess, axis=-1) > 0
    hit = (guess[..., :, None] == actual[..., None, :]).any(-1) & positive
    made = positive.sum()
    return float(hit.sum() / made) if made else 0.0, float(hit.sum() / actual[..., 0].size / actual.shape[-1])


def read_ahead(
    routing: Routing, start: int, stop: int, guess: np.ndarray | None, slots: int, policy: str = DEFAULT_POLICY
) -> dict:
    """Tokens start:stop through ExpertCache with the guesses read ahead (None: no prefetch;
    reads complete at once): per token, demand misses and speculative reads issued and used."""
    cache = ExpertCache(slots, make_policy(policy))
    calls = token_calls(routing.experts[start:stop])
    demand = 0
    layers = routing.layers
    for t, tok in enumerate(calls):
        for layer, keys in enumerate(tok):
            plan = cache.plan(keys)
            cache.loaded(keys)
            demand += len(plan.loads)
            if guess is not None and layer + 1 < layers:
                loads = cache.plan_prefetch((layer + 1, int(e)) for e in guess[t, layer])
                cache.loaded(key for key, _ in loads)
    tokens = len(calls)
    return {
        "misses_per_token": demand / tokens,
        "prefetch_issued_per_token": cache.prefetch_issued / tokens,
        "prefetch_used_per_token": cache.prefetch_used / tokens,
        "reads_per_token": (demand + cache.prefetch_issued) / tokens,
    }


def run(
    routing: Routing,
    budget: float = 25.0,
    guess_count: int | None = None,
    expert_bytes: int = 4_866_048,
    bandwidth: float = 25e6,
    read_ahead_tokens: int = 4000,
    progress: Callable[[str], None] = lambda message: None,
) -> dict:
    """Every predictor: learned on the first half, measured on the second. expert_bytes: one
    DeepSeek-V2-Lite expert at 4 bits (3 x 2048 x 1408 weights, group 64, fp16 scale and bias).
    Precision and recall cover the whole second half; the reads through the cache its first
    `read_ahead_tokens` tokens (a replay through ExpertCache takes about a millisecond per token)."""
    middle, k = routing.middle(), routing.experts.shape[2]
    count = guess_count or k
    cond = coactivation(routing.experts[:middle], routing.num_experts)
    actual_first = routing.experts[1:middle, 1:]
    # the combined predictor's bonus: the best recall on the first half
    bonus_recall = {}
    for bonus in BONUSES:
        s = scores("combined", routing.experts, 1, middle, cond, bonus)
        bonus_recall[bonus] = precision_recall(guesses(s, count), s, actual_first)[1]
    bonus = max(bonus_recall, key=bonus_recall.__getitem__)
    actual = routing.experts[middle:, 1:]
    slots = budget_slots(routing, budget)
    stop = min(routing.tokens, middle + read_ahead_tokens)
    progress(f"prefetch: no prefetch at {budget:g}%")
    base = read_ahead(routing, middle, stop, None, slots)
    read_s = expert_bytes / bandwidth
    out: dict = {
        "budget_percent": budget,
        "guesses_per_layer": count,
        "read_ahead_tokens": stop - middle,
        "combined_bonus": bonus,
        "expert_bytes": expert_bytes,
        "bandwidth_bytes_per_s": bandwidth,
        "no_prefetch": base | {"read_s_per_token": base["reads_per_token"] * read_s},
        "predictors": {},
    }
    for name in PREDICTORS:
        s = scores(name, routing.experts, middle, routing.tokens, cond, bonus)
        guess = guesses(s, count)
        precision, recall = precision_recall(guess, s, actual)
        progress(f"prefetch: {name} read ahead at {budget:g}%")
        cached = read_ahead(routing, middle, stop, guess, slots)
        wasted = cached["prefetch_issued_per_token"] - cached["prefetch_used_per_token"]
        out["predictors"][name] = (
            {"precision": precision, "recall": recall}
            | cached
            | {
                "read_s_per_token": cached["reads_per_token"] * read_s,
                # reads moved ahead of their layer: at most this much can overlap compute
                "read_ahead_s_per_token": cached["prefetch_used_per_token"] * read_s,
                # bandwidth spent on guesses never used: added to every token where reads bound it
                "wasted_s_per_token": wasted * read_s,
            }
        )
    return out


def markdown(result: dict) -> str:
    base = result["no_prefetch"]
    lines = [
        f"## Prefetch predictors (ids only), second half, {result['budget_percent']:g}% budget, "
        f"{result['guesses_per_layer']} guesses per layer, reads through the cache over its first "
        f"{result['read_ahead_tokens']} tokens at "
        f"{result['bandwidth_bytes_per_s'] / 1e6:g} MB/s of {result['expert_bytes'] / 1e6:.2f} MB",
        "",
        "| predictor | precision | recall | misses/token | read ahead used / issued per token "
        "| read s/token | wasted s/token |",
        "|---|---:|---:|---:|---:|---:|---:|",
        f"| none | - | - | {base['misses_per_token']:.1f} | - | {base['read_s_per_token']:.2f} | - |",
    ]
    for name, p in result["predictors"].items():
        lines.append(
            f"| {name} | {p['precision']:.3f} | {p['recall']:.3f} | {p['misses_per_token']:.1f} | "
            f"{p['prefetch_used_per_token']:.1f} / {p['prefetch_issued_per_token']:.1f} | "
            f"{p['read_s_per_token']:.2f} | {p['wasted_s_per_token']:.2f} |"
        )
    return "\n".join(lines) + "\n"
