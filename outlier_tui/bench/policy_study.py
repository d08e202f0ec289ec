"""Eviction policies replayed offline on one recorded routing trace, against
the offline optimum (Belady), decode steps only. Candidates the I/O-bound
regime suggests (frequency-aware, per-layer quotas, LRU-2) next to the
engine's LRU. Reproduce (about 4 minutes unthrottled on the demo model):

    python -m outlier_tui.bench.policy_study record --model DIR --cache-bytes N --json trace.json
    python -m outlier_tui.bench.policy_study replay trace.json --slots 480 192
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import threading
from collections import OrderedDict, defaultdict

from engine.cache_policy import BeladyPolicy, Key, LFUPolicy, LRUPolicy
from outlier_tui.bench import optimal


class LayerQuotaLRU:
    """LRU within each layer; the victim comes from the layer holding the most keys."""

    def __init__(self) -> None:
        self._order: defaultdict[int, OrderedDict] = defaultdict(OrderedDict)

    def on_access(self, key, bulk=False):
        order = self._order[key[0]]
        if key not in order:
            self.on_insert(key, bulk)
        elif not bulk:
            order.move_to_end(key)

    def on_insert(self, key, bulk=False):
        order = self._order[key[0]]
        if key not in order:
            order[key] = None
            if bulk:
                order.move_to_end(key, last=False)

    def on_evict(self, key):
        self._order[key[0]].pop(key, None)

    def choose_victim(self, can_evict):
        for row in sorted(self._order, key=lambda r: -len(self._order[r])):
            victim = next((k for k in self._order[row] if can_evict(k)), None)
            if victim is not None:
                return victim
        return None


class DecayedFrequency:
    """LRFU: each access adds 1 (a prefill access `prefill_weight`) to a score that decays by
    exp(-decay) per access; the lowest score goes."""

    def __init__(self, decay: float, prefill_weight: float) -> None:
        self.decay, self.prefill_weight, self._clock = decay, prefill_weight, 0
        self._score: dict[Key, tuple[float, int]] = {}  # key -> (score, clock when last updated)

    def _now(self, key):
        score, at = self._score[key]
        return score * math.exp(-self.decay * (self._clock - at))

    def on_access(self, key, bulk=False):
        self._clock += 1
        current = self._now(key) if key in self._score else 0.0
        self._score[key] = (current + (self.prefill_weight if bulk else 1.0), self._clock)

    def on_insert(self, key, bulk=False):
        self._score.setdefault(key, (0.0, self._clock))

    def on_evict(self, key):
        self._score.pop(key, None)

    def choose_victim(self, can_evict):
        return min((k for k in self._score if can_evict(k)), key=self._now, default=None)


def candidates(trace):
    yield "LRU (engine default: prefill at the cold end)", LRUPolicy()
    yield "LFU", LFUPolicy()
    yield "per-layer quota LRU", LayerQuotaLRU()
    for decay in (0.001, 0.003, 0.01):
        yield f"LRFU decay {decay}", DecayedFrequency(decay, 0.3)
    yield "Belady (offline optimum)", BeladyPolicy(trace)


def replay(data: dict, slots: int) -> list[tuple[str, float, float]]:
    """(policy, decode hit rate, decode misses per token) for each candidate."""
    trace = optimal.as_keys(data["trace"])
    calls = optimal.calls_from_record(trace, data["calls"])
    start, tokens = data["decode_offset"], data["decode_steps"]
    out = []
    for name, policy in candidates(trace):
        r = optimal.replay(calls, slots, policy, count_from=start)
        out.append((name, r.hit_rate, (r.accesses - r.hits) / tokens))
    return out


def record(model: str, cache_bytes: int, tokens: int, path: str) -> None:
    """One request (the long prompt) with the routing trace recorded, unthrottled."""
    from engine.generation import PromptCacheStore, generate
    from engine.loader import load_streamed_model
    from outlier_tui.bench import measure, workload

    telemetry = measure.StepTelemetry()
    loaded = load_streamed_model(model, cache_bytes=cache_bytes, prefetch=False, record_trace=True, telemetry=telemetry)
    if loaded.streamer is None:
        loaded.close()
        raise SystemExit(f"{model}: no routed experts stream in this model, so there is no routing trace to record")
    cache = loaded.streamer.cache
    telemetry.trace = cache.trace
    try:
        stats, _ = generate(
            loaded,
            PromptCacheStore(),
            workload.messages(long=True),
            workload.params(tokens),
            threading.Event(),
            lambda *args: None,
        )
    finally:
        loaded.close()
    prefill_steps = len(telemetry.steps) - (stats.generation_tokens - 1)
    with open(path, "w") as fh:
        json.dump(
            {
                "trace": cache.trace,
                "calls": cache.trace_calls,
                "slots": cache.num_slots,
                "decode_offset": telemetry.steps[prefill_steps][1]["trace_len"],
                "decode_steps": stats.generation_tokens - 1,
                "prompt_tokens": stats.prompt_tokens,
            },
            fh,
        )


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m outlier_tui.bench.policy_study")
    sub = p.add_subparsers(dest="action", required=True)
    r = sub.add_parser("record")
    r.add_argument("--model", required=True)
    r.add_argument("--cache-bytes", type=int, required=True)
    r.add_argument("--tokens", type=int, default=48)
    r.add_argument("--json", required=True)
    s = sub.add_parser("replay")
    s.add_argument("trace")
    s.add_argument("--slots", type=int, nargs="+")
    args = p.parse_args(argv)
    if args.action == "record":
        record(args.model, args.cache_bytes, args.tokens, args.json)
        return 0
    data = json.load(open(args.trace))
    for slots in args.slots or [data["slots"]]:
        print(f"\n{slots} slots, {data['decode_steps']} decode steps after a {data['prompt_tokens']}-token prompt")
        print("| policy | decode hit rate | misses/token |\n|---|---:|---:|")
        for name, hit, misses in replay(data, slots):
            print(f"| {name} | {hit:.3f} | {misses:.1f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
