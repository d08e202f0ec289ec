"""Makes a streamed model's experts resident: the slot pools, the SSD reads into them, the
prefetch decisions (load-time measurement, decode judge) and the telemetry of every fetch.

At each MoE layer engine.streamed_experts asks for the router's chosen experts; hits are
served in place, misses read by the SSD reader into slots the cache assigns.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, NamedTuple

import mlx.core as mx
import numpy as np

from engine.cache_policy import RouterScorePolicy, prompt_favourites
from engine.checkpoint import ExpertTensor, MoELayerFiles
from engine.decode_prefetch import DecodePrefetchJudge
from engine.errors import ExpertReadError
from engine.expert_cache import ExpertCache
from engine.reader import DEMAND, PREFETCH, ExpertReader, ReadJob
from engine.slot_pool import SlotPool
from engine.telemetry import Telemetry


@dataclass(frozen=True)
class PrefetchMode:
    """How the next layer's experts are read ahead (each part measured alone in
    outlier_tui/bench/RESULTS.md, I/O-bound section). Off by default; the loader turns it on
    where its measurement says reads cost more than the prediction."""

    enabled: bool = False
    prefill: bool = True  # predict for prompt chunks too: layer L+1's reads overlap layer L's compute
    decode: bool = True  # predict for each decoded token (automatic: off until the decode judge turns it on)
    early: bool = True  # issue the next layer's reads before waiting on this layer's
    demand_first: bool = True  # speculative reads queue behind demand reads, promoted once needed
    cancel_stale: bool = True  # a disproved guess whose read has not started frees its slot
    # a guessed expert enters the policy's cold end until used: measured alone it read 10% more
    # bytes per token at the same hit rate (outlier_tui/bench/RESULTS.md), so it is off by default
    cold_admit: bool = False

    @classmethod
    def of(cls, value: bool | PrefetchMode | None) -> PrefetchMode:
        return value if isinstance(value, PrefetchMode) else cls(enabled=bool(value))


@dataclass
class PoolGroup:
    """MoE rows whose experts share one shape: one slot pool and the cache assigning it."""

    pool: SlotPool
    cache: ExpertCache
    rows: tuple[int, ...]

    @property
    def slot_bytes(self) -> int:
        return SlotPool.slot_nbytes(self.pool.specs)


class _Part(NamedTuple):
    """One expert tensor of one row, as read jobs need it."""

    tensor: ExpertTensor
    view: np.ndarray  # the pool's numpy view of this tensor, [slots, ...]
    convert: str | None  # on-disk dtype tag where it differs from the slot's
    file: Path | None  # stacked [E, ...] tensor: its file (None: one tensor per expert)
    base: int  # stacked: file offset of expert 0
    nbytes: int  # bytes of one expert


def _expert_reads(parts: list[_Part], expert: int, slot: int) -> Iterator[ReadJob]:
    """The reads of one expert's tensors into one slot."""
    for tensor, view, convert, file, base, nbytes in parts:
        if file is None:  # one tensor per expert
            offset, size = tensor.expert_range(expert)
            yield ReadJob(tensor.expert_file(expert), offset, size, view[slot], convert)
        else:  # expert e of a stacked tensor
            yield ReadJob(file, base + expert * nbytes, nbytes, view[slot], convert)


class PrefillCancelled(Exception):
    """Raised at an MoE layer when the request was cancelled during a prefill chunk: a long
    chunk on a slow machine takes minutes, cancel must not wait for it."""


class ExpertStreamer:
    """Makes experts resident on demand; shared by every streamed layer. Each row uses
    the pool and cache of its expert shape (one group unless the checkpoint mixes
    precisions or sizes across layers)."""

    def __init__(
        self,
        layers: list[MoELayerFiles],
        groups: list[PoolGroup],
        reader: ExpertReader,
        telemetry: Telemetry,
        prefetch: bool | PrefetchMode = False,
        prompt_favourites: bool = True,
    ) -> None:
        self.layers = layers
        self.groups = groups
        self.reader = reader
        self.telemetry = telemetry
        self.mode = PrefetchMode.of(prefetch)
        self.prefetch_decision: dict | None = None  # the load-time measurement, when it decided
        self.last_wait_cpu = 0.0  # this thread's CPU time in the last fetch's wait (not host work)
        self.io_wait_s = 0.0  # wall time waiting on reads, all calls
        # with automatic prefetch: turns decode prefetch on and off from what decoding measures
        self.decode_judge: DecodePrefetchJudge | None = None
        # io_wait_s, wasted guesses, reader busy seconds and bytes read at the last decode token
        self._judged_at: tuple[float, int, float, int] = (0.0, 0, 0.0, 0)
        self._group_of: list[PoolGroup] = [groups[0]] * len(layers)
        # all-resident slot of (row, 0): rows of a group sit one after another in its pool
        self._base = [0] * len(layers)
        for group in groups:
            for local, row in enumerate(group.rows):
                self._group_of[row] = group
                self._base[row] = local * layers[row].num_experts
            group.cache.on_evict = self._evicted
            if isinstance(group.cache.policy, RouterScorePolicy):
                group.cache.policy.reserve(len(layers), max(layers[row].num_experts for row in group.rows))
            group.cache.cancel_stale, group.cache.cold_admit = self.mode.cancel_stale, self.mode.cold_admit
        # Set by preload_all: expert e of row r sits in slot base[r] + e for good,
        # so layers skip the host sync and routing is recorded after the fact.
        self.all_resident = False
        # after a prompt's call, keep its favourite experts hot (keep_hot); off: plain LRU order
        self.prompt_favourites = prompt_favourites
        # Set by generation for one request: a prefill stops at the next MoE layer once it is true.
        self.stop_prefill: Callable[[], bool] | None = None
        # Set by engine.prefill while a prompt runs layer by layer: MoE layers park there.
        self.layer_major: Any = None
        # Set by engine.prefill for one prompt: every (row, expert) it routes to is added.
        self.prompt_experts: set[tuple[int, int]] | None = None
        # all-resident mode: the routing of the forward being built, and of the one before it
        self._unrecorded: list[tuple[int, mx.array]] = []
        self._in_flight: list[tuple[int, mx.array]] = []
        # residency changes telemetry has not been told of yet (the cache's evictions land here)
        self._changes: list[tuple[tuple[int, int], bool]] = []
        # per row: on-disk dtype tag where it differs from the slot's dtype (the reader converts)
        self._convert: list[dict[str, str | None]] = []
        for row, files in enumerate(layers):
            specs = self._group_of[row].pool.specs
            self._convert.append(
                {
                    name: None if spec.dtype == files.tensors[name].dtype else files.tensors[name].dtype
                    for name, spec in specs.items()
                }
            )
        self._parts = self._read_parts()
        self._slot_bytes = [(g.cache, g.slot_bytes) for g in groups]
        # bytes of one expert on disk (the first row's): the decode judge prices a read by them
        self._expert_bytes = layers[0].disk_bytes_per_expert

    def _read_parts(self) -> list[list[_Part]]:
        """Per row and tensor: what a read job needs, looked up once (hot path)."""
        return [
            [
                _Part(
                    t,
                    self._group_of[row].pool.views[name],
                    self._convert[row][name],
                    t.location.file if t.stacked else None,
                    t.location.offset,
                    t.expert_nbytes,
                )
                for name, t in files.tensors.items()
            ]
            for row, files in enumerate(self.layers)
        ]

    @property
    def pool_bytes(self) -> int:
        """Bytes the slot pools hold allocated (the budget in use)."""
        return sum(g.pool.nbytes for g in self.groups)

    def shrink(self, budget_bytes: int, min_slots: int) -> int:
        """Give memory back: each pool keeps its share of budget_bytes, at least min_slots
        slots (one layer's experts), the policy choosing what stays. Waits for reads in
        flight first (a slot being written must not move). Returns the pools' bytes after."""
        before = self.pool_bytes
        if budget_bytes >= before:
            return before
        if self.all_resident:  # the policy picks what stays: it must know every forward so far
            self.flush_routing(everything=True)
        for group in self.groups:
            for key, ticket in group.cache.in_flight():
                try:
                    ticket.wait()
                except ExpertReadError:
                    group.cache.drop([key])  # a later call reads it again, and reports the error then
            slots = max(min_slots, group.pool.num_slots * budget_bytes // before)
            if slots < group.pool.num_slots:
                group.pool.shrink(slots, group.cache.shrink(slots))
        self._parts = self._read_parts()
        self.all_resident = False  # slots no longer sit at base + expert
        mx.clear_cache()  # hand the freed arrays back to the system, not to MLX's cache
        return self.pool_bytes

    def sole_group(self) -> PoolGroup:
        """The one pool and cache of a model whose experts share one shape. A routing trace or
        a replay against one budget covers one pool, so a mixed-shape model (one pool per
        shape) is refused here rather than reported from its first pool without saying so."""
        if len(self.groups) != 1:
            raise ValueError(
                f"this model's experts come in {len(self.groups)} shapes, each with its own pool and cache: "
                "a figure of one cache would cover only part of the model"
            )
        return self.groups[0]

    def prefetch_totals(self) -> tuple[int, int, int]:
        """(issued, used, cancelled) speculative reads, summed over every pool."""
        issued, used = self._prefetch_counts()
        return issued, used, sum(g.cache.prefetch_cancelled for g in self.groups)

    def pool_of(self, row: int) -> SlotPool:
        return self._group_of[row].pool

    def cache_of(self, row: int) -> ExpertCache:
        return self._group_of[row].cache

    def resident_slot_base(self, row: int) -> int:
        return self._base[row]

    @property
    def cache_bytes(self) -> tuple[int, int]:
        """(bytes held now, peak bytes held) over every pool."""
        used = sum(cache.used * size for cache, size in self._slot_bytes)
        peak = sum(cache.peak_used * size for cache, size in self._slot_bytes)
        return used, peak

    @property
    def prefetch_enabled(self) -> bool:
        return self.mode.enabled

    @prefetch_enabled.setter
    def prefetch_enabled(self, on: bool) -> None:
        self.mode = replace(self.mode, enabled=on)

    def fetch(
        self, row: int, experts: list[int], bulk: bool = False, ahead: tuple[int, list[int]] | None = None
    ) -> list[int]:
        """Slot of every expert (sorted, unique) of this call, all loaded on return.
        bulk: the call serves a prefill (many tokens). ahead: (row, experts) to read
        speculatively once this call's own reads are queued, before waiting on them (or once
        they are loaded, where the prefetch mode is not `early`); with decode prefetch off, a
        decode step's guess is only counted (ExpertCache.shadow_prefetch) for the judge.
        Plain lists: a decode step has a few experts per layer, where numpy's per-call cost
        dominates (hot path)."""
        if bulk and self.stop_prefill is not None and self.stop_prefill():
            raise PrefillCancelled()
        keys = [(row, e) for e in experts]
        cache = self._group_of[row].cache
        plan = cache.plan(keys, bulk)
        mode = self.mode
        tickets = plan.pending
        if tickets and mode.demand_first:
            for ticket in tickets:
                ticket.promote()
        if plan.loads:
            tickets.append(self._submit(plan.loads, DEMAND))
        # one telemetry update per call (evictions and loads included), before any wait
        self.telemetry.record_fetch(
            row,
            experts,
            [e for (_, e), _ in plan.loads],
            self._take_changes(),
            self.cache_bytes if plan.loads else None,
            self._prefetch_counts() if mode.enabled and (mode.prefill if bulk else mode.decode) else None,
        )
        if ahead is not None and not bulk and not mode.decode:  # judged as if read, not read
            self.cache_of(ahead[0]).shadow_prefetch((ahead[0], e) for e in ahead[1])
            ahead = None
        if ahead is not None and mode.early:
            self.prefetch(*ahead)
        self.last_wait_cpu = 0.0
        if tickets:
            start, start_cpu = time.perf_counter(), time.thread_time()
            try:
                for ticket in tickets:
                    ticket.wait()
            except ExpertReadError:
                cache.drop(keys)
                self.telemetry.set_resident(keys, False)
                raise
            finally:
                waited = time.perf_counter() - start
                self.telemetry.add_io_wait(waited)
                self.io_wait_s += waited
                self.last_wait_cpu = time.thread_time() - start_cpu
            cache.loaded(keys)
        if ahead is not None and not mode.early:
            self.prefetch(*ahead)
        return plan.slots

    def preload_all(self) -> None:
        """Read every expert once (the budget holds them all): nothing can miss later."""
        for row, files in enumerate(self.layers):
            self.fetch(row, list(range(files.num_experts)))
        self.all_resident = all(
            self.cache_of(row).slot_of((row, e)) == self._base[row] + e
            for row, files in enumerate(self.layers)
            for e in range(files.num_experts)
        )

    def note_routing(self, row: int, indices: mx.array) -> None:
        """All-resident mode: remember the router's choice, and record it one forward later.
        A decode builds the next forward while the last one computes (mlx-lm's pipelining):
        reading that one's routing now would wait for it, and the two would no longer overlap
        (measured: 3 ms of a 100 ms token here); the forward before it has been computed."""
        if row == 0:
            start = time.thread_time()
            self.flush_routing()
            self.telemetry.add_host_time(time.thread_time() - start)  # the engine's own work here
        self._unrecorded.append((row, indices))

    def flush_routing(self, everything: bool = False) -> None:
        """Record the routing of the forward before the last (everything: of the last too)."""
        if everything:
            self.flush_routing()
        pending, self._in_flight, self._unrecorded = self._in_flight, self._unrecorded, []
        if not pending:
            return
        rows = [row for row, _ in pending]
        # read from computed arrays as lists: no MLX op, which would queue behind the forward
        # in flight, and few numpy arrays (after MLX has built a forward, glibc's malloc makes
        # each costly: measured here, one np.stack of the forward's ids cost 1.8 ms)
        used = [(row, sorted(set(_flat_list(indices)))) for row, indices in pending]
        self.telemetry.record_hits(used, distinct=len(set(rows)) == len(rows))
        calls: dict[ExpertCache, list[list[tuple[int, int]]]] = {}  # per cache: its rows' calls, in order
        for row, experts in used:
            calls.setdefault(self.cache_of(row), []).append([(row, e) for e in experts])
        for cache, cache_calls in calls.items():
            cache.note_uses(cache_calls)

    def keep_hot(self, row: int, inds: np.ndarray) -> None:
        """After a prompt's call: its favourite experts of this row (most used by its last
        tokens) move to the policy's hot end, the rest stay at the cold end, so decoding starts
        with the experts it is likeliest to ask for. Each row keeps its share of the slots.
        Replayed on the demo's routing at 25% budget: 5-11% fewer decode misses in the first
        24-32 tokens than prefill-at-the-cold-end alone, unchanged at 10% (bench/RESULTS.md)."""
        group = self._group_of[row]
        if isinstance(group.cache.policy, RouterScorePolicy):
            group.cache.policy.observe_prompt(row, inds)
            return
        keep = group.cache.num_slots // len(group.rows)
        if keep:
            group.cache.promote([(row, e) for e in prompt_favourites(inds, keep).tolist()])

    def prefetch(self, row: int, experts: list[int]) -> None:
        """Start reading a later layer's predicted experts without waiting (one ticket per
        expert, so a disproved guess can be cancelled alone)."""
        loads = self.cache_of(row).plan_prefetch((row, e) for e in experts)
        if loads:
            priority = PREFETCH if self.mode.demand_first else DEMAND
            for load in loads:
                self._submit([load], priority)
            self.telemetry.record_fetch(row, [], [], self._take_changes(), self.cache_bytes, self._prefetch_counts())

    def decide_prefetch(self, predict: Callable[[mx.array], mx.array], hidden_size: int, samples: int = 4) -> None:
        """Turn prefetch on for prompts where one expert read takes longer than twice the
        predictor's host sync: with half of the guesses right (0.7-0.9 measured on the demo) it
        then saves more time than it costs. Measured now, on this disk and backend (reads go
        into slots no expert holds yet); the figures are kept in prefetch_decision.
        Decode prefetch then starts off and a DecodePrefetchJudge turns it on only while its wrong
        guesses cost less read time than the compute they overlap: bandwidth-bound, they cost
        more bytes than the right ones hide (0.87x decode tok/s at 25% budget, 25 MB/s,
        outlier_tui/bench/RESULTS.md)."""
        reads = []
        group = self.groups[0]
        for i in range(min(samples, group.cache.num_slots - group.cache.used)):
            row = group.rows[(7 * i + 3) % len(group.rows)]
            expert = (13 * i + 5) % self.layers[row].num_experts
            start = time.perf_counter()
            self.reader.submit_units(self._jobs([((row, expert), group.cache.used + i)])).wait()
            reads.append(time.perf_counter() - start)
        x = mx.zeros((1, 1, hidden_size))
        guesses = []
        for _ in range(4):
            start = time.perf_counter()
            np.array(predict(x))
            guesses.append(time.perf_counter() - start)
        read_s, predict_s = float(np.median(reads)) if reads else 0.0, min(guesses[1:])
        enabled = read_s > 2 * predict_s
        self.decode_judge = DecodePrefetchJudge(read_s) if enabled else None
        self.mode = replace(self.mode, enabled=enabled, decode=False)
        self.prefetch_decision = {
            "read_s_per_expert": read_s,
            "predict_s_per_layer": predict_s,
            "enabled": self.prefetch_enabled,
            "decode_windows": self.decode_judge.history if self.decode_judge else [],
        }

    def after_decode_token(self, token_s: float) -> None:
        """Feed the decode judge one token's wall time; it may turn decode prefetch on or off."""
        judge = self.decode_judge
        if judge is None:
            return
        issued, used, cancelled = self.prefetch_totals()
        # guesses read and never used, or (decode prefetch off) that would have been
        wasted = issued - used - cancelled + sum(g.cache.shadow_wasted for g in self.groups)
        busy, nbytes = self.reader.stats.busy_and_bytes()
        io_mark, wasted_mark, busy_mark, bytes_mark = self._judged_at
        self._judged_at = (self.io_wait_s, wasted, busy, nbytes)
        # what one expert read costs now: the load-time figure can miss a bandwidth cap
        read_s = (busy - busy_mark) / (nbytes - bytes_mark) * self._expert_bytes if nbytes > bytes_mark else None
        on = judge.add_token(token_s, self.io_wait_s - io_mark, wasted - wasted_mark, read_s)
        if on != self.mode.decode:
            self.mode = replace(self.mode, decode=on)

    def _jobs(self, loads: list[tuple[tuple[int, int], int]]) -> list[Iterator[ReadJob]]:
        """One unit of reads per expert (all its tensors, read in a row by one thread), into
        the pool of that row's expert shape. Lazy: the reader thread that takes a unit builds
        its jobs, so the decoder only queues, and two misses' jobs are built in parallel."""
        return [_expert_reads(self._parts[row], expert, slot) for (row, expert), slot in loads]

    def _submit(self, loads: list[tuple[tuple[int, int], int]], priority: int):
        """Queue the reads of one row's loads (key, slot); telemetry learns of them at the
        next record_fetch."""
        ticket = self.reader.submit_units(self._jobs(loads), priority)
        keys = [key for key, _ in loads]
        self._group_of[keys[0][0]].cache.mark_loading(keys, ticket)
        self._changes += [(key, True) for key in keys]
        return ticket

    def _prefetch_counts(self) -> tuple[int, int]:
        return (sum(g.cache.prefetch_issued for g in self.groups), sum(g.cache.prefetch_used for g in self.groups))

    def _evicted(self, key: tuple[int, int]) -> None:
        self._changes.append((key, False))

    def _take_changes(self) -> list[tuple[tuple[int, int], bool]]:
        """Residency changes (evictions, loads) since the last telemetry update, in order."""
        changes, self._changes = self._changes, []
        return changes


def _flat_list(array: mx.array) -> list[int]:
    """An evaluated array's values, flattened (tolist reads it; reshape would be an MLX op)."""
    values: Any = array.tolist()
    while values and isinstance(values[0], list):
        values = [v for part in values for v in part]
    return values


def unique_sorted(values: np.ndarray) -> list[int]:
    """Distinct ids, ascending, as Python ints."""
    return np.unique(values).tolist()
