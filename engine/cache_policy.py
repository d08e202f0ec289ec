"""Eviction policies for the expert cache.

A policy only orders keys; the cache owns the slots and decides what may be
evicted (never an expert the current call needs, never one being read).
Keys are (moe_row, expert) pairs.
"""

from __future__ import annotations

import heapq
import math
from collections import OrderedDict, defaultdict
from collections.abc import Callable, Iterable, Sequence
from typing import Any, Protocol

import numpy as np

from engine.dtypes import elements

Key = tuple[int, int]  # (moe_row, expert)


class EvictionPolicy(Protocol):
    # bulk: the access comes from a prefill (many tokens at once), not from decoding
    def on_access(self, key: Key, bulk: bool = False) -> None: ...  # a call used key

    def on_insert(self, key: Key, bulk: bool = False) -> None: ...

    def on_evict(self, key: Key) -> None: ...

    def choose_victim(self, can_evict: Callable[[Key], bool]) -> Key | None: ...

    # the policy's pick among the resident keys it tracks that can_evict allows
    # optional: begin_call(keys, bulk), told by ExpertCache.plan before a call's accesses


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
    """Evict the least often used expert (ties: least recently used). Counts outlive
    evictions. A heap with stale entries skipped: replays evict millions of times."""

    def __init__(self) -> None:
        self._count: defaultdict[Key, int] = defaultdict(int)
        self._last: dict[Key, int] = {}
        self._clock = 0
        self._heap: list[tuple[int, int, Key]] = []

    def on_access(self, key: Key, bulk: bool = False) -> None:
        self._clock += 1
        self._count[key] += 1
        self._last[key] = self._clock
        heapq.heappush(self._heap, (self._count[key], self._clock, key))

    def on_insert(self, key: Key, bulk: bool = False) -> None:
        self._clock += 1
        self._last[key] = self._clock
        heapq.heappush(self._heap, (self._count[key], self._clock, key))

    def on_evict(self, key: Key) -> None:
        self._last.pop(key, None)

    def choose_victim(self, can_evict: Callable[[Key], bool]) -> Key | None:
        last = self._last
        return _heap_victim(self._heap, lambda entry: last.get(entry[2]) == entry[1], can_evict)


def _heap_victim(heap: list, current: Callable[[tuple], bool], can_evict: Callable[[Key], bool]) -> Key | None:
    """The first key of a lazy-deletion heap (entries end with their key) whose entry is
    `current` and that may be evicted: stale entries (evicted, or used again since) are dropped,
    current ones that may not be evicted now are put back."""
    held, victim = [], None
    while heap:
        entry = heap[0]
        if not current(entry):
            heapq.heappop(heap)
            continue
        if can_evict(entry[-1]):
            victim = entry[-1]
            break
        held.append(heapq.heappop(heap))
    for entry in held:
        heapq.heappush(heap, entry)
    return victim


def prompt_scores(inds: np.ndarray, decay: float = 0.9) -> np.ndarray:
    """How much a prompt used each expert id, each use weighted decay**(tokens after it): decoding
    continues from the prompt's last tokens. inds: [..., tokens, top_k] ids in token order."""
    per_token = inds.reshape(-1, inds.shape[-1])
    weights = np.repeat(decay ** np.arange(len(per_token) - 1, -1, -1, dtype=np.float64), per_token.shape[1])
    return np.bincount(per_token.reshape(-1), weights=weights)


def prompt_favourites(inds: np.ndarray, keep: int) -> np.ndarray:
    """The `keep` experts a prompt used most (prompt_scores), least favoured first."""
    score = prompt_scores(inds)
    used = np.flatnonzero(score)
    return used[np.argsort(score[used], kind="stable")][-keep:]


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


class NextUsePolicy:
    """Evict the expert whose next use is expected furthest ahead, knowing the layer order.

    A decoder calls the MoE layers in a fixed cycle, so an expert of the layer just computed
    cannot be used again for a whole token, while one of the next layer may be used at the
    very next call: LRU evicts exactly the wrong one (on DeepSeek-V2-Lite's routing at a 5%
    budget, under one token's working set, LRU hits nothing). The expected next use of
    expert e of row r, in tokens, is its row's next call (one cycle after its last) plus
    the expected wait for e to be picked, 1/p - 1, where p is e's chance of being picked at
    a call of r: half a fast and half a slow moving average of whether it was (weights 0.5
    and 0.95 per call of r), so both recency and frequency count. Ids only: no router scores.

    Replayed on DeepSeek-V2-Lite-Chat's real routing (`outlier bench --replay`, its first 7.7k
    tokens, bench/RESULTS.md): fewest misses of every online policy tried at 5-50% budgets on
    both halves, 3-17% fewer than LRU. Call boundaries come from ExpertCache (begin_call); an access
    repeated within one call (keep_hot's promote) counts once. Rows are learned as seen, so
    one policy serves any layout, and a cache that holds only some rows (mixed expert shapes)
    counts only its own rows' calls.
    """

    FAST, SLOW, MIX, PRIOR = 0.5, 0.95, 0.5, 0.05
    _FEW = 32  # up to this many experts, a call's updates run in Python floats, not numpy

    def __init__(self) -> None:
        # [row, expert]: the moving averages as of the row's latest call. Each call of a row
        # decays its whole row at once (two in-place multiplies), so a score needs no
        # per-expert age: the row's scoring is four ops over data half the size it was with
        # per-expert stamps (hot path: inside the engine the row's cache misses cost more
        # than its arithmetic)
        self._fast = np.zeros((0, 0))
        self._slow = np.zeros((0, 0))
        self._resident = np.zeros((0, 0), dtype=bool)
        self._victims = np.zeros((0, 0))  # score where resident and fresh, -inf elsewhere
        self._scratch = np.zeros(0)  # one row of floats (_score_row)
        self._calls = np.zeros(0, dtype=np.int64)  # per row: calls so far
        self._last_call = np.zeros(0)  # per row: the clock at its latest call
        self._clock = 0
        self._rows_seen: set[int] = set()
        self._row = -1
        self._this_call: set[Key] = set()
        self._inserted: list[int] = []  # experts of the current call's row read during the call
        self._stale: set[int] = set()  # rows whose victims entries need recomputing
        self._rescore: list[tuple[int, list[int]]] = []  # (row, experts): only these entries
        # per row: the largest of its victims entries, for rows not in _unranked: the victim
        # search looks at one entry per row, then one row, not at every expert of the model
        self._row_best = np.zeros(0)
        self._row_best_at: list[int] = []  # where in the row its largest entry is (the first)
        self._unranked: set[int] = set()
        # the current call's row, once it ends: its keys in this call are protected until then
        self._stale_after_call = False

    def reserve(self, rows: int, experts: int) -> None:
        """Size the tables once; keys outside them still grow them."""
        self._fit(rows - 1, experts - 1)

    def begin_call(self, keys: Sequence[Key], bulk: bool = False) -> None:
        """A call of one row starts (ExpertCache.plan, before its accesses): the row's clock
        moves on, its averages decay one step, and every key of the call counts as used
        (hot path: once per MoE layer per token)."""
        if not keys:
            return
        row, experts = self._start_call(keys)
        fast, slow = self._fast[row], self._slow[row]
        fast *= self.FAST
        slow *= self.SLOW
        if len(experts) <= self._FEW:
            self._count_few(row, experts)
        else:
            self._count_many(row, np.array(experts))
        self._unranked.add(row)
        self._stale_after_call = True

    def begin_calls(self, calls: Sequence[Sequence[Key]]) -> None:
        """begin_call for each of a forward's calls in turn (a budget that holds every expert,
        ExpertCache.note_uses): the same state, every call's experts updated in one pass."""
        calls = [keys for keys in calls if keys]
        rows = [keys[0][0] for keys in calls]
        if len(set(rows)) < len(rows):  # a row twice: its second update depends on its first
            for keys in calls:
                self.begin_call(keys)
            return
        if not calls:
            return
        experts = [[e for _, e in keys] for keys in calls]
        top_row, top = max(rows), max(max(row_experts) for row_experts in experts)
        if top_row >= self._fast.shape[0] or top >= self._fast.shape[1]:
            self._fit(top_row, top)
        # _start_call's bookkeeping, call by call: only the first call can find the row before
        # the batch unscored (each later one finds the batch's previous row stale already)
        new_row = rows[0] not in self._rows_seen
        self._rows_seen.update(rows)
        self._stale.update(rows)
        self._end_last_call(new_row)
        at = np.array(rows)
        self._calls[at] += 1
        self._last_call[at] = np.arange(self._clock + 1, self._clock + 1 + len(rows))
        self._clock += len(rows)
        self._inserted, self._row, self._this_call = [], rows[-1], set(calls[-1])
        self._fast[at] *= self.FAST
        self._slow[at] *= self.SLOW
        self._count_many(np.repeat(at, [len(e) for e in experts]), np.array([e for row_e in experts for e in row_e]))
        self._unranked.update(rows)
        self._stale_after_call = True

    def _start_call(self, keys: Sequence[Key]) -> tuple[int, list[int]]:
        """begin_call's bookkeeping of the row and the clocks; returns (row, experts)."""
        row = keys[0][0]
        experts = [e for _, e in keys]
        top = max(experts)
        if row >= self._fast.shape[0] or top >= self._fast.shape[1]:
            self._fit(row, top)
        self._clock += 1
        self._calls[row] += 1
        self._last_call[row] = self._clock
        new_row = row not in self._rows_seen
        self._rows_seen.add(row)
        self._stale.add(row)
        self._end_last_call(new_row)
        self._inserted = []
        self._row = row
        self._this_call = set(keys)
        return row, experts

    def _end_last_call(self, new_row: bool) -> None:
        """A call starts: the last call's row, where it was scored during its call, lacks a
        score only for what it read since (nothing else of that row has changed), unless a
        row was just seen for the first time (every score's constant moved)."""
        if self._stale_after_call:
            if new_row or self._row in self._stale:
                self._stale.add(self._row)
            elif self._inserted:
                self._rescore.append((self._row, self._inserted))

    def _count_many(self, rows: int | np.ndarray, experts: np.ndarray) -> None:
        """The experts' use counted in one numpy update (a row, or one row per expert; each
        (row, expert) once, their rows decayed already): they are in use until the call
        ends, so not victims (the row is scored again then: rescoring it at every miss of
        the call costs more than the rest of the policy)."""
        self._fast[rows, experts] += 1 - self.FAST
        self._slow[rows, experts] += 1 - self.SLOW
        self._victims[rows, experts] = -np.inf

    def _count_few(self, row: int, experts: list[int]) -> None:
        """begin_call's update for a decode step's few experts: the same arithmetic, element
        by element in Python floats (numpy's per-call cost is most of the time at ~10)."""
        fast, slow, victims = elements(self._fast[row]), elements(self._slow[row]), elements(self._victims[row])
        keep_fast, keep_slow = 1 - self.FAST, 1 - self.SLOW
        for e in experts:
            fast[e] += keep_fast
            slow[e] += keep_slow
            victims[e] = -math.inf

    def on_access(self, key: Key, bulk: bool = False) -> None:
        if key not in self._this_call:  # a caller other than ExpertCache.plan: a call of its own
            self.begin_call([key], bulk)

    def on_insert(self, key: Key, bulk: bool = False) -> None:
        row, expert = key
        if row >= self._fast.shape[0] or expert >= self._fast.shape[1]:
            self._fit(row, expert)
        self._resident[row, expert] = True
        if row == self._row:  # a miss of the current call: in use until it ends
            self._victims[row, expert] = -np.inf
            self._unranked.add(row)
            self._inserted.append(expert)
            self._stale_after_call = True
        else:  # a speculative read of another row
            self._stale.add(row)

    def on_evict(self, key: Key) -> None:
        row, expert = key
        if row < self._resident.shape[0] and expert < self._resident.shape[1]:
            self._resident[row, expert] = False
            self._victims[row, expert] = -np.inf
            self._unranked.add(row)

    def expected_next_use(self, row: int, experts: Any = slice(None)) -> np.ndarray:
        """Per expert of `row` (or of `experts` only): its expected next use in tokens, up to
        a constant shared by every row (the larger, the sooner it goes)."""
        p = self.MIX * self._fast[row, experts] + (1 - self.MIX) * self._slow[row, experts]
        return self._last_call[row] / max(len(self._rows_seen), 1) + 1.0 / np.maximum(p, 1e-12)

    def _score_row(self, row: int) -> None:
        """victim_scores' row: expected_next_use where resident, -inf elsewhere, the same
        values in fewer ops, in a scratch array. Allocation-free on purpose: here the first
        numpy array of 1 KB or more allocated after MLX has run costs 50-100 us in glibc's
        malloc (its fast bins are consolidated), more than the whole row's arithmetic. MIX
        is 0.5 and halving is exact (where p would be subnormal it is below 1e-12 both
        ways), so 2 / max(2p, 2e-12) has expected_next_use's bits; an entry not resident is
        -inf already (every writer keeps it so), so only the resident ones are written."""
        a = self._scratch
        np.add(self._fast[row], self._slow[row], out=a)  # 2p
        np.maximum(a, 2e-12, out=a)
        np.divide(2.0, a, out=a)  # 1 / max(p, 1e-12)
        base = self._last_call[row] / max(len(self._rows_seen), 1)
        np.add(base, a, out=a)
        # not np.add(..., where=): a masked ufunc allocates buffers (the cost above, 45 us here)
        np.copyto(self._victims[row], a, where=self._resident[row])

    def victim_scores(self) -> np.ndarray:
        """[row, expert]: the expected next use of every resident expert not in use by the
        current call (-inf elsewhere); the largest goes first. The policy's own table: read it,
        do not keep it."""
        victims = self._victims
        for row in self._stale:  # only the rows called or changed since the last choice moved
            self._score_row(row)
        for row, experts in self._rescore:
            if row not in self._stale:
                self._score_few(row, experts)
                self._unranked.add(row)
        self._unranked |= self._stale
        self._stale, self._rescore = set(), []
        return victims

    def choose_victim(self, can_evict: Callable[[Key], bool]) -> Key | None:
        victims = self.choose_victims(1, can_evict)
        return victims[0] if victims else None

    def _score_few(self, row: int, experts: list[int]) -> None:
        """victim_scores' entries for a few experts of one row (those read during its last
        call): _score_row's arithmetic in Python floats, the same values."""
        base = self._last_call.item(row) / max(len(self._rows_seen), 1)
        fast, slow = elements(self._fast[row]), elements(self._slow[row])
        resident, victims = elements(self._resident[row]), elements(self._victims[row])
        for e in experts:
            victims[e] = base + 2.0 / max(fast[e] + slow[e], 2e-12) if resident[e] else -math.inf

    def choose_victims(self, count: int, can_evict: Callable[[Key], bool]) -> list[Key]:
        """The victims `count` choose_victim calls in a row would pick (each eviction only
        masks its own entry), in that order: one table refresh for a call's misses instead
        of one per miss. Each is the largest victims entry left, the first in row-major
        order on ties, found through the per-row bests and where they are (one argmax of a
        row per victim; numpy's max costs several argmaxes on a row this short)."""
        victims = self.victim_scores()
        if victims.size == 0:
            return []
        best, best_at = self._row_best, self._row_best_at
        for row in self._unranked:
            scores = victims[row]
            best_at[row] = at = int(scores.argmax())
            best[row] = scores[at]
        self._unranked = set()
        masked: list[tuple[int, int, float]] = []  # looked at: in use, or chosen; masked while we look
        chosen: list[Key] = []
        while len(chosen) < count:
            row = int(best.argmax())
            score = best.item(row)
            if score == -math.inf:
                break
            expert = best_at[row]
            if can_evict((row, expert)):
                chosen.append((row, expert))
            masked.append((row, expert, score))
            scores = victims[row]
            scores[expert] = -np.inf
            best_at[row] = at = int(scores.argmax())
            best[row] = scores[at]
        for row, expert, score in masked:  # the evictions (on_evict) mask the chosen for good
            victims[row, expert] = score
            if score > best[row] or (score == best[row] and expert < best_at[row]):  # the first on ties
                best[row], best_at[row] = score, expert
        return chosen

    def _fit(self, row: int, expert: int) -> None:
        """Grow the tables to hold (row, expert)."""
        rows, experts = max(self._fast.shape[0], row + 1), max(self._fast.shape[1], expert + 1)
        if (rows, experts) == self._fast.shape:
            return
        old_rows, old_experts = self._fast.shape

        def grown(table: np.ndarray, fill: float | bool | int) -> np.ndarray:
            out = np.full((rows, experts), fill, dtype=table.dtype)
            out[:old_rows, :old_experts] = table
            return out

        calls, last = np.zeros(rows, dtype=np.int64), np.zeros(rows)
        calls[: len(self._calls)], last[: len(self._last_call)] = self._calls, self._last_call
        self._calls, self._last_call = calls, last
        self._fast, self._slow = grown(self._fast, self.PRIOR), grown(self._slow, self.PRIOR)
        # a new expert of a row called before: its prior, decayed by those calls
        self._fast[:old_rows, old_experts:] *= self.FAST ** calls[:old_rows, None]
        self._slow[:old_rows, old_experts:] *= self.SLOW ** calls[:old_rows, None]
        self._resident = grown(self._resident, False)
        self._victims = grown(self._victims, -np.inf)
        self._scratch = np.zeros(experts)
        self._row_best = np.full(rows, -np.inf)
        self._row_best_at = [0] * rows
        self._unranked = set(range(rows))
        self._stale.update(range(rows))


class BeladyPolicy:
    """Offline optimal: evict the expert whose next use lies furthest ahead.

    Needs the whole future access trace, so it only serves benchmarks that
    replay a recorded trace in the same order (`on_access` advances time).
    A heap of (-next use, key) with stale entries skipped: a replay of a real
    trace evicts millions of times, a scan of every resident key each time
    would take hours.
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
        self._heap: list[tuple[int, Key]] = []

    def _set(self, key: Key, when: int) -> None:
        self._next[key] = when
        heapq.heappush(self._heap, (-when, key))

    def on_access(self, key: Key, bulk: bool = False) -> None:
        if self._pos < len(self._trace) and self._trace[self._pos] == key:
            self._set(key, self._next_use[self._pos])
            self._pos += 1
        else:
            self._set(key, self._first.get(key, len(self._trace)))

    def on_insert(self, key: Key, bulk: bool = False) -> None:
        if key not in self._next:
            self._set(key, self._first.get(key, len(self._trace)))

    def on_evict(self, key: Key) -> None:
        self._next.pop(key, None)

    def choose_victim(self, can_evict: Callable[[Key], bool]) -> Key | None:
        upcoming = self._next
        return _heap_victim(self._heap, lambda entry: upcoming.get(entry[1]) == -entry[0], can_evict)


class LFUDAPolicy:
    """LFU with dynamic aging (LFUDA): a key's priority is its use count plus the priority of
    the last key evicted, so old favourites age out. Replayed on DeepSeek-V2-Lite's routing
    as one session it misses 15-31% more than LRU at 10-50% budgets (bench/RESULTS.md): kept
    as a named candidate, not the default."""

    def __init__(self) -> None:
        self._age = 0.0
        self._count: dict[Key, int] = {}
        self._priority: dict[Key, float] = {}
        self._heap: list[tuple[float, int, Key]] = []
        self._tick = 0  # ties: least recently prioritised first

    def _push(self, key: Key) -> None:
        self._tick += 1
        priority = self._age + self._count[key]
        self._priority[key] = priority
        heapq.heappush(self._heap, (priority, self._tick, key))

    def on_access(self, key: Key, bulk: bool = False) -> None:
        self._count[key] = self._count.get(key, 0) + 1
        self._push(key)

    def on_insert(self, key: Key, bulk: bool = False) -> None:
        if key not in self._count:
            self._count[key] = 0
            self._push(key)

    def on_evict(self, key: Key) -> None:
        self._age = self._priority.pop(key, self._age)
        self._count.pop(key, None)

    def choose_victim(self, can_evict: Callable[[Key], bool]) -> Key | None:
        heap, held, victim = self._heap, [], None
        while heap:
            priority, _, key = heap[0]
            if self._priority.get(key) != priority or key not in self._count:
                heapq.heappop(heap)
                continue
            if can_evict(key):
                victim = key
                break
            held.append(heapq.heappop(heap))
        for entry in held:
            heapq.heappush(heap, entry)
        return victim


# the default: fewest misses of every online policy replayed on a trained model's routing, both
# halves of the replayed span, every budget from 5% to 50% (`outlier bench --replay`, RESULTS.md)
DEFAULT_POLICY = "next-use"
POLICIES: dict[str, Callable[[], EvictionPolicy]] = {
    "next-use": NextUsePolicy,
    "lru": LRUPolicy,
    "lfu": LFUPolicy,
    "lfuda": LFUDAPolicy,
    "router-score": RouterScorePolicy,
}


def make_policy(name: str) -> EvictionPolicy:
    try:
        return POLICIES[name]()
    except KeyError:
        raise ValueError(f"unknown cache policy {name!r}; choose one of {sorted(POLICIES)}") from None
