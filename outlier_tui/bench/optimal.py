"""Replay a recorded routing trace through the engine's own cache bookkeeping
with LRU and with the offline-optimal policy (Belady) at the same slot count.

The engine plans one call per MoE layer (that layer's unique experts, all
protected from eviction during the call); `calls_from_trace` rebuilds those
calls from the flat trace so the replay has the same constraints. With
prefetch off, the LRU replay reproduces the engine's live hits exactly.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import NamedTuple

from engine.cache_policy import BeladyPolicy, EvictionPolicy, Key, LRUPolicy
from engine.expert_cache import ExpertCache


class Call(NamedTuple):
    """One ExpertCache.plan call: its keys, and whether it was a bulk (prefill) call."""

    keys: list[Key]
    bulk: bool


def as_keys(trace: Iterable[Sequence[int]]) -> list[Key]:
    """(row, expert) tuples from a trace that may come from JSON as [row, expert] lists."""
    return [(int(row), int(expert)) for row, expert in trace]


def calls_from_trace(trace: Sequence[Key], num_slots: int) -> list[Call]:
    """Split the flat (row, expert) trace into the engine's per-call key lists
    (none flagged bulk: the trace alone does not say which calls were prefill).

    A call is a run of keys of one row with no repeat and at most num_slots
    keys (chunked prefill plans num_slots sorted experts at a time)."""
    calls: list[Call] = []
    current: list[Key] = []
    seen: set[Key] = set()
    for key in trace:
        if current and (key[0] != current[-1][0] or key in seen or len(current) == num_slots):
            calls.append(Call(current, False))
            current, seen = [], set()
        current.append(key)
        seen.add(key)
    if current:
        calls.append(Call(current, False))
    return calls


def calls_from_record(trace: Sequence[Key], record: Iterable[Sequence[int]]) -> list[Call]:
    """The engine's exact calls, from ExpertCache.trace_calls: (key count, bulk) each."""
    calls, start = [], 0
    for count, bulk in record:
        calls.append(Call(list(trace[start : start + count]), bool(bulk)))
        start += count
    return calls


@dataclass
class Replay:
    hits: int = 0
    accesses: int = 0
    miss_batches: list[list[Key]] = field(default_factory=list)  # per call, counted calls only

    @property
    def hit_rate(self) -> float:
        return self.hits / self.accesses if self.accesses else 1.0


def replay(calls: Sequence[Call], num_slots: int, policy: EvictionPolicy, count_from: int = 0) -> Replay:
    """Run the calls through an ExpertCache; hits are counted from key index count_from."""
    cache = ExpertCache(num_slots, policy)
    out = Replay()
    position = 0
    for call, bulk in calls:
        plan = cache.plan(call, bulk)
        cache.loaded(call)
        if position >= count_from:
            out.hits += plan.hits
            out.accesses += len(call)
            if plan.loads:
                out.miss_batches.append([key for key, _ in plan.loads])
        position += len(call)
    return out


def compare(
    trace: Iterable[Sequence[int]],
    num_slots: int,
    count_from: int = 0,
    record: Iterable[Sequence[int]] | None = None,
) -> dict:
    """LRU and Belady hit rates on one trace at one slot count. With the cache's
    call record the replay is exact (prefill calls flagged); without it the
    calls are rebuilt from the trace."""
    keys = as_keys(trace)
    calls = calls_from_record(keys, record) if record else calls_from_trace(keys, num_slots)
    lru = replay(calls, num_slots, LRUPolicy(), count_from)
    optimal = replay(calls, num_slots, BeladyPolicy(keys), count_from)
    return {
        "slots": num_slots,
        "accesses": lru.accesses,
        "lru_hits": lru.hits,
        "lru_hit_rate": lru.hit_rate,
        "optimal_hits": optimal.hits,
        "optimal_hit_rate": optimal.hit_rate,
        "lru_miss_batches": lru.miss_batches,
    }
