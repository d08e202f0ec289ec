"""Eviction policies that use more than the cache's access order, replayed on one recorded
routing of the demo model: the router's probabilities over every expert at every decode step,
and every prompt token's top-k. Answers two questions of the I/O-bound study: how far from
Belady's misses can an online policy get, and how much of Belady's advantage is simply not
reading an expert twice (the compulsory misses: experts decoding uses that the prompt never
did, which every policy must read once). An oracle told the next few tokens' routing bounds
what any predictor could add to the eviction choice.

    python -m outlier_tui.bench.routing_study record --model DIR --tokens 128 --json short.json
    python -m outlier_tui.bench.routing_study record --model DIR --tokens 64 --long-prompt --json long.json
    python -m outlier_tui.bench.routing_study replay short.json --tokens 24 127 --slots 480 192

`record` runs the model fully resident (about 2-3 min on the demo here) with a tap on each MoE
block's router; it needs Mixtral's layout (`block_sparse_moe.gate`), which the demo has.
"""

from __future__ import annotations

import argparse
import bisect
import json
import sys
import threading
from collections import OrderedDict
from collections.abc import Iterator
from typing import NamedTuple, Protocol

import mlx.core as mx
import mlx.nn as nn
import numpy as np

from engine.cache_policy import Key, RouterScorePolicy
from engine.streamed_moe import prompt_favourites

TOP_K = 2


class Call(NamedTuple):
    """One MoE layer's call: the experts it needs, and what a policy may know of its routing."""

    layer: int
    experts: list[int]
    prompt_top_k: np.ndarray | None  # [tokens, k] for a prompt's call
    probs: np.ndarray  # router probabilities: mean over the prompt, or this decode step's


class Policy(Protocol):
    def victim(self, resident: set[Key], needed: set[Key], step: int) -> Key: ...

    def after(self, step: int, call: Call) -> None: ...


class LRU:
    """The engine's LRU: a prompt's experts enter at the cold end and are not promoted."""

    def __init__(self, favourites_per_layer: int = 0) -> None:
        self.order: OrderedDict[Key, None] = OrderedDict()
        self.keep = favourites_per_layer  # > 0: the engine's keep_hot after each prompt call

    def victim(self, resident: set[Key], needed: set[Key], step: int) -> Key:
        return next(k for k in self.order if k in resident and k not in needed)

    def after(self, step: int, call: Call) -> None:
        for e in call.experts:
            key = (call.layer, e)
            if call.prompt_top_k is None:
                self.order[key] = None
                self.order.move_to_end(key)
            elif key not in self.order:
                self.order[key] = None
                self.order.move_to_end(key, last=False)
        if call.prompt_top_k is not None and self.keep:
            for e in prompt_favourites(call.prompt_top_k, self.keep):
                self.order.move_to_end((call.layer, int(e)))


class RouterScore:
    """The engine's RouterScorePolicy itself, told this replay's residency before each choice."""

    def __init__(self, alpha: float, layers: int, experts: int) -> None:
        self.policy = RouterScorePolicy(alpha)
        self.policy.reserve(layers, experts)
        self._resident: set[Key] = set()

    def victim(self, resident: set[Key], needed: set[Key], step: int) -> Key:
        for key in resident - self._resident:
            self.policy.on_insert(key)
        for key in self._resident - resident:
            self.policy.on_evict(key)
        self._resident = set(resident)
        victim = self.policy.choose_victim(lambda key: key not in needed)
        assert victim is not None  # replay() checked that every call fits
        return victim

    def after(self, step: int, call: Call) -> None:
        if call.prompt_top_k is not None:
            self.policy.observe_prompt(call.layer, call.prompt_top_k)
        else:
            self.policy.observe(call.layer, call.probs)


class ReuseGap:
    """LIRS-like: evict the expert whose last two uses lay furthest apart (in decode steps);
    experts used once go first, oldest first."""

    def __init__(self) -> None:
        self.last: dict[Key, int] = {}
        self.gap: dict[Key, int] = {}

    def victim(self, resident: set[Key], needed: set[Key], step: int) -> Key:
        return max(
            (k for k in resident if k not in needed),
            key=lambda k: (self.gap.get(k, 1 << 30), -self.last.get(k, -(1 << 30))),
        )

    def after(self, step: int, call: Call) -> None:
        if call.prompt_top_k is not None:
            return
        for e in call.experts:
            key = (call.layer, e)
            if key in self.last:
                self.gap[key] = step - self.last[key]
            self.last[key] = step


class Lookahead:
    """An upper bound for predictors: the router-score policy, never evicting an expert that the
    next `tokens` decode steps use (told by the recording itself; where every resident is needed
    that soon, the score alone chooses). Shows how far ahead a policy would have to see the
    routing to approach Belady, who sees all of it."""

    def __init__(self, calls: list[Call], tokens: int, layers: int, experts: int) -> None:
        self.inner = RouterScore(RouterScorePolicy().alpha, layers, experts)
        self.calls, self.horizon = calls, tokens * layers

    def victim(self, resident: set[Key], needed: set[Key], step: int) -> Key:
        soon = set(needed)
        for call in self.calls[step + 1 : step + 1 + self.horizon]:
            soon.update((call.layer, e) for e in call.experts)
        return self.inner.victim(resident, soon if resident - soon else needed, step)

    def after(self, step: int, call: Call) -> None:
        self.inner.after(step, call)


class Belady:
    """The offline optimum: evict the expert whose next use lies furthest ahead."""

    def __init__(self, calls: list[Call]) -> None:
        self.uses: dict[Key, list[int]] = {}
        for step, call in enumerate(calls):
            for e in call.experts:
                self.uses.setdefault((call.layer, e), []).append(step)

    def victim(self, resident: set[Key], needed: set[Key], step: int) -> Key:
        def next_use(key: Key) -> int:
            uses = self.uses.get(key, [])
            i = bisect.bisect_right(uses, step)
            return uses[i] if i < len(uses) else 1 << 30

        return max((k for k in resident if k not in needed), key=next_use)

    def after(self, step: int, call: Call) -> None:
        pass


def replay(calls: list[Call], slots: int, policy: Policy) -> tuple[int, int]:
    """(decode accesses, decode misses) of one policy with `slots` slots."""
    resident: set[Key] = set()
    accesses = misses = 0
    for step, call in enumerate(calls):
        needed = {(call.layer, e) for e in call.experts}
        if len(needed) > slots:
            raise ValueError(f"a call needs {len(needed)} experts at once; replay with more than {slots} slots")
        decode = call.prompt_top_k is None
        for key in needed:
            accesses += decode
            if key in resident:
                continue
            misses += decode
            if len(resident) >= slots:
                resident.discard(policy.victim(resident, needed, step))
            resident.add(key)
        policy.after(step, call)
    return accesses, misses


def compulsory_misses(calls: list[Call]) -> int:
    """Decode accesses to experts no earlier call used: every policy reads these once."""
    seen: set[Key] = set()
    count = 0
    for call in calls:
        for e in call.experts:
            key = (call.layer, e)
            count += call.prompt_top_k is None and key not in seen
            seen.add(key)
    return count


def candidates(calls: list[Call], slots: int, layers: int, experts: int) -> Iterator[tuple[str, Policy]]:
    yield "LRU, prompt at the cold end (the design before keep_hot)", LRU()
    yield "LRU + keep_hot (the prompt's favourites hot)", LRU(slots // layers)
    for alpha in (0.5, 0.7, 0.9):
        default = " (the engine's default)" if alpha == RouterScorePolicy().alpha else ""
        yield f"router-score average (alpha {alpha}){default}", RouterScore(alpha, layers, experts)
    yield "reuse gap (LIRS-like)", ReuseGap()
    for tokens in (1, 5, 10):
        yield f"router-score told the next {tokens} tokens' routing (oracle)", Lookahead(calls, tokens, layers, experts)
    yield "Belady (offline optimum)", Belady(calls)


def load_calls(data: dict, decode_tokens: int) -> list[Call]:
    layers = 1 + max(layer for layer, _ in data["decode"])
    calls = []
    for layer, top_k, mean in data["prompt"]:
        top = np.array(top_k)
        calls.append(Call(layer, sorted(set(top.reshape(-1).tolist())), top, np.array(mean)))
    for layer, probs in data["decode"][: layers * decode_tokens]:
        p = np.array(probs)
        calls.append(Call(layer, sorted(np.argsort(-p)[:TOP_K].tolist()), None, p))
    return calls


def record(model_dir: str, tokens: int, long_prompt: bool, path: str) -> None:
    from engine.generation import PromptCacheStore, generate
    from engine.loader import load_streamed_model
    from outlier_tui.bench import workload

    loaded = load_streamed_model(model_dir, cache_bytes=None, prefetch=False)
    taps: list[tuple[int, np.ndarray]] = []

    class Tap(nn.Module):
        def __init__(self, gate: nn.Module, layer: int) -> None:
            super().__init__()
            self.gate, self.layer = gate, layer

        def __call__(self, x: mx.array) -> mx.array:
            logits = self.gate(x)
            probs = mx.softmax(logits.astype(mx.float32), axis=-1)
            taps.append((self.layer, np.array(probs).reshape(-1, logits.shape[-1])))
            return logits

    try:
        for i, layer in enumerate(loaded.model.layers):
            block = getattr(layer, "block_sparse_moe", None)
            if block is None:
                raise SystemExit("routing_study record needs Mixtral's layout (block_sparse_moe.gate), as the demo has")
            block.gate = Tap(block.gate, i)
        generate(
            loaded,
            PromptCacheStore(),
            workload.messages(long=long_prompt),
            workload.params(tokens),
            threading.Event(),
            lambda *args: None,
        )
    finally:
        loaded.close()
    prompt, decode = [], []
    for layer, probs in taps:
        if len(probs) > 1:
            top = np.argsort(-probs, axis=1)[:, :TOP_K]
            prompt.append([layer, top.tolist(), probs.mean(0).round(6).tolist()])
        else:
            decode.append([layer, probs[0].round(6).tolist()])
    with open(path, "w") as fh:
        json.dump({"prompt": prompt, "decode": decode}, fh)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m outlier_tui.bench.routing_study")
    sub = p.add_subparsers(dest="action", required=True)
    r = sub.add_parser("record")
    r.add_argument("--model", required=True)
    r.add_argument("--tokens", type=int, default=128)
    r.add_argument("--long-prompt", action="store_true")
    r.add_argument("--json", required=True)
    s = sub.add_parser("replay")
    s.add_argument("routing")
    s.add_argument("--tokens", type=int, nargs="+", default=[24])
    s.add_argument("--slots", type=int, nargs="+", default=[480, 192])
    args = p.parse_args(argv)
    if args.action == "record":
        record(args.model, args.tokens, args.long_prompt, args.json)
        return 0
    with open(args.routing) as fh:
        data = json.load(fh)
    layers, experts = 1 + max(layer for layer, _ in data["decode"]), len(data["decode"][0][1])
    prompt_tokens = len(data["prompt"][0][1])
    for tokens in args.tokens:
        calls = load_calls(data, tokens)
        floor = compulsory_misses(calls)
        for slots in args.slots:
            print(f"\n{slots} slots, {tokens} decode steps after a {prompt_tokens}-token prompt")
            print(f"compulsory misses (decode experts the prompt never used): {floor / tokens:.1f}/token")
            print("| policy | decode hit rate | misses/token |\n|---|---:|---:|")
            for name, policy in candidates(calls, slots, layers, experts):
                accesses, misses = replay(calls, slots, policy)
                print(f"| {name} | {1 - misses / accesses:.3f} | {misses / tokens:.1f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
