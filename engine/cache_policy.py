"""Eviction policies for the expert cache.

A policy only orders keys; the cache owns the slots and decides what may be
evicted (never an expert the current call needs, never one being read).
Keys are (moe_row, expert) pairs.
"""

from __future__ import annotations

from collections import OrderedDict, defaultdict
from collections.abc import Callable, Iterable, Sequence
from typing import Protocol

import numpy as np

Key = tuple[int, int]  # (moe_row, expert)


class EvictionPolicy(Protocol):
    # bulk: the access comes from a prefill (many tokens at once), not from decoding
    def on_access(self, key: Key, bulk: bool = False) -> None: ...  # a call used key

    def on_insert(self, key: Key, bulk: bool = False) -> None: ...

    def on_evict(self, key: Key) -> None: ...

    def choose_victim(self, can_evict: Callable[[Key], bool]) -> Key | None: ...

    # the policy's pick among the resident keys it tracks that can_evict allows


class LRUPolicy:
    """Evict the expert unused for longest. Default: routing has strong recency.

    Scan-resistant: experts a prefill brings in enter at the cold end and its
    hits are not promoted, so a long prompt, which touches most experts once,
    does not flush the experts decoding keeps using (measured on the demo
    model's routing trace: 0.80 -> 0.84 of the offline optimum over a repeated
    request, unchanged on a fresh one)."""

    def __init__(self) -> None:
        self._order: OrderedDict[Key, None] = OrderedDict()

    def on_access(self, key: Key, bulk: bool = False) -> None:
        if key not in self._order:
            self.on_insert(key, bulk)
        elif not bulk:
            self._order.move_to_end(key)

    def on_insert(self, key: Key, bulk: bool = False) -> None:
        if key not in self._order:
            self._order[key] = None
            if bulk:
                self._order.move_to_end(key, last=False)

    def on_evict(self, key: Key) -> None:
        self._order.pop(key, None)

    def choose_victim(self, can_evict: Callable[[Key], bool]) -> Key | None:
        return next((k for k in self._order if can_evict(k)), None)  # oldest first


class LFUPolicy:
    """Evict the least often used expert (ties: least recently used)."""

    def __init__(self) -> None:
        self._count: defaultdict[Key, int] = defaultdict(int)
        self._last: dict[Key, int] = {}
        self._clock = 0

    def on_access(self, key: Key, bulk: bool = False) -> None:
        self._clock += 1
        self._count[key] += 1
        self._last[key] = self._clock

    def on_insert(self, key: Key, bulk: bool = False) -> None:
        self._clock += 1
        self._last[key] = self._clock

    def on_evict(self, key: Key) -> None:
        self._last.pop(key, None)

    def choose_victim(self, can_evict: Callable[[Key], bool]) -> Key | None:
        keys = [k for k in self._last if can_evict(k)]
        return min(keys, key=lambda k: (self._count[k], self._last[k]), default=None)


def prompt_scores(inds: np.ndarray, decay: float = 0.9) -> np.ndarray:
    """How much a prompt used each expert id, each use weighted decay**(tokens after it): decoding
    continues from the prompt's last tokens. inds: [..., tokens, top_k] ids in token order."""
    per_token = inds.reshape(-1, inds.shape[-1])
    weights = np.repeat(decay ** np.arange(len(per_token) - 1, -1, -1, dtype=np.float64), per_token.shape[1])
    return np.bincount(per_token.reshape(-1), weights=weights)


class RouterScorePolicy:
    """Evict the expert its router has favoured least lately. Each decode step a layer's
    router probabilities over all its experts (not only the top-k it picked) update a running
    average (weight `alpha` on the past); a prompt sets the average from its top-k, recent
    tokens weighted most. Replayed on the demo's routing at 25% and 10% budgets: 13% fewer
    decode misses than LRU on average, up to 24% after a long prompt (bench/RESULTS.md,
    routing study)."""

    def __init__(self, alpha: float = 0.7) -> None:
        self.alpha = alpha
        self._score = np.zeros((0, 0))  # [row, expert]
        self._resident = np.zeros((0, 0), dtype=bool)
        # the score where resident, inf elsewhere: a victim is one argmin away (hot path: every
        # miss and every prefetch evicts)
        self._victims = np.zeros((0, 0))
        # keys held out of the victim search for one cache call (hold/release), with their values
        self._held: dict[Key, float] = {}

    def reserve(self, rows: int, experts: int) -> None:
        """Size the tables once (the streamer knows the shape), so the per-layer updates
        need no checks; keys outside it still grow them."""
        self._fit(rows - 1, experts - 1)

    def observe(self, row: int, probs: np.ndarray) -> None:
        """One decode step's router probabilities of `row` (one per expert): runs every
        layer of every token, so three in-place numpy operations and nothing else."""
        score = self._score[row, : len(probs)]
        score *= self.alpha
        score += probs * (1 - self.alpha)
        np.copyto(self._victims[row, : len(probs)], score, where=self._resident[row, : len(probs)])

    def observe_prompt(self, row: int, inds: np.ndarray) -> None:
        """A prompt's top-k ids of `row` ([..., tokens, k], in token order)."""
        counts = prompt_scores(inds)
        self._fit(row, len(counts) - 1)
        self._score[row] = 0.0
        self._score[row, : len(counts)] = counts / counts.sum()
        self._victims[row] = np.where(self._resident[row], self._score[row], np.inf)

    def on_access(self, key: Key, bulk: bool = False) -> None:
        pass  # the scores come from the router (observe, observe_prompt), not from accesses

    def on_insert(self, key: Key, bulk: bool = False) -> None:
        row, expert = key
        if row >= self._resident.shape[0] or expert >= self._resident.shape[1]:
            self._fit(row, expert)
        self._resident[key] = True
        if key in self._held:
            self._held[key] = self._score[key]
        else:
            self._victims[key] = self._score[key]

    def hold(self, keys: Iterable[Key]) -> None:
        """Keep `keys` (the experts one cache call uses: none of them may be evicted by it) out
        of choose_victim until release(). The call's own experts rank low until observe() sees
        them, so without this each victim search at 60 x 512 stepped over them one argmin (of
        30,720 scores) at a time; the victims chosen are the same."""
        victims, shape = self._victims, self._victims.shape
        for key in keys:
            if key[0] < shape[0] and key[1] < shape[1] and key not in self._held:
                self._held[key] = victims[key]
                victims[key] = np.inf

    def release(self) -> None:
        """Undo hold(): every held key gets back its value (its score if it was inserted meanwhile)."""
        victims = self._victims
        for key, value in self._held.items():
            victims[key] = value if self._resident[key] else np.inf
        self._held.clear()

    def on_evict(self, key: Key) -> None:
        self._resident[key] = False
        self._victims[key] = np.inf
        if key in self._held:
            self._held[key] = np.inf

    def choose_victim(self, can_evict: Callable[[Key], bool]) -> Key | None:
        victims = self._victims
        row, expert = divmod(int(victims.argmin()), victims.shape[1])
        if can_evict((row, expert)) and self._resident[row, expert]:
            return row, expert
        victims = victims.copy()  # the lowest is in use by this call: mask as we go
        for _ in range(int(self._resident.sum())):
            row, expert = divmod(int(victims.argmin()), victims.shape[1])
            if self._resident[row, expert] and can_evict((row, expert)):
                return row, expert
            victims[row, expert] = np.inf
        return None

    def _fit(self, row: int, expert: int) -> None:
        """Grow the tables to hold (row, expert)."""
        rows, experts = max(self._score.shape[0], row + 1), max(self._score.shape[1], expert + 1)
        if (rows, experts) != self._score.shape:
            score, resident = np.zeros((rows, experts)), np.zeros((rows, experts), dtype=bool)
            score[: self._score.shape[0], : self._score.shape[1]] = self._score
            resident[: self._resident.shape[0], : self._resident.shape[1]] = self._resident
            self._score, self._resident = score, resident
            self._victims = np.where(resident, score, np.inf)


class BeladyPolicy:
    """Offline optimal: evict the expert whose next use lies furthest ahead.

    Needs the whole future access trace, so it only serves benchmarks that
    replay a recorded trace in the same order (`on_access` advances time).
    """

    def __init__(self, trace: Sequence[Key]) -> None:
        self._next_use: list[int] = [0] * len(trace)
        upcoming: dict[Key, int] = {}
        for i in range(len(trace) - 1, -1, -1):
            self._next_use[i] = upcoming.get(trace[i], len(trace))
            upcoming[trace[i]] = i
        self._first = upcoming
        self._trace = trace
        self._pos = 0
        self._next: dict[Key, int] = {}

    def on_access(self, key: Key, bulk: bool = False) -> None:
        if self._pos < len(self._trace) and self._trace[self._pos] == key:
            self._next[key] = self._next_use[self._pos]
            self._pos += 1
        else:
            self._next[key] = self._first.get(key, len(self._trace))

    def on_insert(self, key: Key, bulk: bool = False) -> None:
        self._next.setdefault(key, self._first.get(key, len(self._trace)))

    def on_evict(self, key: Key) -> None:
        self._next.pop(key, None)

    def choose_victim(self, can_evict: Callable[[Key], bool]) -> Key | None:
        keys = [k for k in self._next if can_evict(k)]
        return max(keys, key=self._next.__getitem__, default=None)


# the default: fewest decode misses in the routing study and live (bench/RESULTS.md); layers
# whose router cannot be found make the loader fall back to LRU
DEFAULT_POLICY = "router-score"
POLICIES: dict[str, Callable[[], EvictionPolicy]] = {
    "lru": LRUPolicy,
    "lfu": LFUPolicy,
    "router-score": RouterScorePolicy,
}


def make_policy(name: str) -> EvictionPolicy:
    try:
        return POLICIES[name]()
    except KeyError:
        raise ValueError(f"unknown cache policy {name!r}; choose one of {sorted(POLICIES)}") from None
