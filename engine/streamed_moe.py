"""The streamed replacement for mlx-lm's SwitchGLU and SwitchMLP.

At each MoE layer the router's choice is pulled to the host (the one sync
per layer the design allows), the chosen experts are made resident in cache
slots (hits in place, misses read by the SSD reader), and the same
gather_qmm / gather_mm maths as SwitchGLU runs over the slot buffers with
expert ids remapped to slot ids.
"""

from __future__ import annotations

import time
import typing
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, NamedTuple

import mlx.core as mx
import mlx.nn as nn
import numpy as np

from engine.cache_policy import RouterScorePolicy, prompt_scores
from engine.checkpoint import ExpertTensor, MoELayerFiles
from engine.decode_prefetch import DecodePrefetchJudge
from engine.errors import ExpertReadError
from engine.expert_cache import ExpertCache
from engine.reader import DEMAND, PREFETCH, ExpertReader, ReadJob
from engine.slot_pool import SlotPool
from engine.telemetry import Telemetry


@dataclass(frozen=True)
class Projection:
    """How one projection multiplies: quantized (group_size, bits, mode) or dense."""

    name: str
    quantized: bool
    group_size: int = 0
    bits: int = 0
    mode: str = "affine"
    has_bias: bool = False


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
        self.prompt_favourites = True
        # Set by generation for one request: a prefill stops at the next MoE layer once it is true.
        self.stop_prefill: Callable[[], bool] | None = None
        # Set by engine.prefill while a prompt runs layer by layer: MoE layers park there.
        self.layer_major: Any = None
        # Set by engine.prefill for one prompt: every (row, expert) it routes to is added.
        self.prompt_experts: set[tuple[int, int]] | None = None
        self._unrecorded: list[tuple[int, mx.array]] = []
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
        # per row and tensor: what a read job needs, looked up once (hot path)
        self._parts = [
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
            for row, files in enumerate(layers)
        ]
        self._slot_bytes = [(g.cache, g.slot_bytes) for g in groups]
        # bytes of one expert on disk (the first row's): the decode judge prices a read by them
        self._expert_bytes = layers[0].disk_bytes_per_expert

    @property
    def cache(self) -> ExpertCache:
        """The first shape group's cache (the only one unless expert shapes are mixed)."""
        return self.groups[0].cache

    @property
    def pool(self) -> SlotPool:
        """The first shape group's pool (the only one unless expert shapes are mixed)."""
        return self.groups[0].pool

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
        """All-resident mode: remember the router's choice; record it once computed."""
        if row == 0:
            self.flush_routing()
        self._unrecorded.append((row, indices))

    def flush_routing(self) -> None:
        """Record the routing of forwards already evaluated (the next forward needs them)."""
        pending, self._unrecorded = self._unrecorded, []
        for row, indices in pending:
            experts = _unique_sorted(np.array(indices))
            self.cache_of(row).plan([(row, e) for e in experts])
            self.telemetry.record_access(row, experts, ())

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
            self.telemetry.record_fetch(row, (), (), self._take_changes(), self.cache_bytes, self._prefetch_counts())

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
        issued, used = self._prefetch_counts()
        cancelled = sum(g.cache.prefetch_cancelled for g in self.groups)
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


class _PoolLinear:
    """SwitchLinear / QuantizedSwitchLinear.__call__ over one projection's pool arrays, with
    everything but the input and the slot ids bound once (hot path: once per layer per token)."""

    def __init__(self, proj: Projection, arrays: dict[str, mx.array]) -> None:
        name = proj.name
        self.quantized = proj.quantized
        self.weight = arrays[f"{name}.weight"]
        self.scales = arrays.get(f"{name}.scales")
        self.biases = arrays.get(f"{name}.biases")
        self.global_scale = arrays.get(f"{name}.global_scale")
        self.bias = arrays[f"{name}.bias"] if proj.has_bias else None
        self.group_size, self.bits, self.mode = proj.group_size, proj.bits, proj.mode

    def __call__(self, x: mx.array, idx: mx.array, sorted_indices: bool) -> mx.array:
        if self.quantized:
            assert self.scales is not None
            y = mx.gather_qmm(
                x,
                self.weight,
                self.scales,
                self.biases,
                None,
                idx,
                True,
                self.group_size,
                self.bits,
                self.mode,
                self.global_scale,
                sorted_indices=sorted_indices,
            )
        else:
            y = mx.gather_mm(x, self.weight.swapaxes(-1, -2), rhs_indices=idx, sorted_indices=sorted_indices)
        if self.bias is not None:
            y = y + mx.expand_dims(self.bias[idx], -2)
        return y


def _unique_sorted(values: np.ndarray) -> list[int]:
    """Distinct ids, ascending, as Python ints."""
    return np.unique(values).tolist()


def prompt_favourites(inds: np.ndarray, keep: int) -> np.ndarray:
    """The `keep` experts a prompt used most (cache_policy.prompt_scores), least favoured first."""
    score = prompt_scores(inds)
    used = np.flatnonzero(score)
    return used[np.argsort(score[used], kind="stable")][-keep:]


class StreamedExperts(nn.Module):
    """Drop-in for mlx-lm's SwitchGLU or SwitchMLP whose expert weights live in the
    slot pool of this layer's expert shape."""

    def __init__(
        self,
        row: int,
        streamer: ExpertStreamer,
        projections: dict[str, Projection],
        activation: Callable,
        predict_next: Callable[[mx.array], mx.array] | None = None,
        next_row: int | None = None,
        router_probs: Callable[[mx.array], mx.array] | None = None,
    ) -> None:
        super().__init__()
        self._row = row
        self._streamer = streamer
        self._pool = streamer.pool_of(row)
        self._cache = streamer.cache_of(row)
        linears = {name: _PoolLinear(proj, self._pool.arrays) for name, proj in projections.items()}
        # a plain attribute: nn.Module keeps dicts as children, found through its slow __getattr__
        object.__setattr__(self, "_linears", linears)
        self._glu_form = "gate_proj" in projections  # SwitchGLU; else SwitchMLP (fc1, fc2)
        self._act = activation
        self._predict_next = predict_next
        self._next_row = next_row
        # this layer's router scores, for a RouterScorePolicy
        policy = self._cache.policy
        self._scorer = policy if router_probs is not None and isinstance(policy, RouterScorePolicy) else None
        self._router_probs = router_probs if self._scorer is not None else None
        self._num_scores = streamer.layers[row].num_experts if self._router_probs is not None else 0
        # one decoded token's host needs, one array each way (with and without the next layer's
        # guess), compiled: the fewer ops built between compute and sync, the less host time
        self._probes = {guess: mx.compile(self._probe_graph(guess)) for guess in (False, True)}

    def _probe_graph(self, guess: bool) -> Callable[[mx.array, mx.array], mx.array]:
        """One token's routing (ids), the policy's scores (every expert's router probability)
        and the next layer's predicted ids, as one flat float32 array: one host sync."""
        router_probs, predict = self._router_probs, self._predict_next if guess else None

        def probe(x: mx.array, indices: mx.array) -> mx.array:
            parts = [indices.reshape(-1).astype(mx.float32)]
            if router_probs is not None:
                parts.append(router_probs(x).reshape(-1))
            if predict is not None:
                parts.append(predict(x).reshape(-1).astype(mx.float32))
            return mx.concatenate(parts) if len(parts) > 1 else parts[0]

        return probe

    @property
    def row(self) -> int:
        return self._row

    def __call__(self, x: mx.array, indices: mx.array) -> mx.array:
        streamer = self._streamer
        if streamer.all_resident:  # nothing can miss: no host sync needed
            streamer.note_routing(self._row, indices)
            base = streamer.resident_slot_base(self._row)
            return self._experts(x, indices.astype(mx.uint32) + base)
        if streamer.layer_major is not None:  # a prompt's chunks meet here (engine.prefill)
            return streamer.layer_major.park(self, x, indices)
        # host work is counted in this thread's CPU time: on a shared machine wall time also
        # counts the time other processes hold the core
        start = time.thread_time()
        if indices.size == indices.shape[-1]:
            y, waited = self._one_token(x, indices)
        else:
            y, waited = self._prompt_chunk(x, indices)
        if waited is not None:
            streamer.telemetry.add_host_time(time.thread_time() - start - waited)
        return y

    def _one_token(self, x: mx.array, indices: mx.array) -> tuple[mx.array, float | None]:
        """A decode step: the output, and this thread's CPU time spent in MLX evaluation or
        waiting on reads (None: not counted). Plain lists, no numpy: a few experts per layer."""
        streamer = self._streamer
        mode = streamer.mode
        # the judge weighs the guesses while decode prefetch is off too (not read then)
        guess = mode.enabled and self._predict_next is not None and (mode.decode or streamer.decode_judge is not None)
        probe = self._probes[guess](x, indices)
        sync = time.thread_time()  # building the graph above is host work
        # host sync: the bytes to fetch depend on it; one flat array, read once
        values = typing.cast("list[float]", probe.tolist())
        waited = time.thread_time() - sync
        k = indices.shape[-1]
        ids = [int(v) for v in values[:k]]
        unique = sorted(set(ids))
        if len(unique) > self._cache.num_slots:
            return self._chunked([(x, np.array(indices))], unique)[0], None
        scores = k + self._num_scores  # values: ids, scores, the next layer's guess
        ahead = None
        if guess:
            assert self._next_row is not None
            ahead = (self._next_row, sorted({int(v) for v in values[scores:]}))
        slot_of = streamer.fetch(self._row, unique, False, ahead)
        waited += streamer.last_wait_cpu
        slots: Any = [slot_of[unique.index(e)] for e in ids]
        for _ in range(indices.ndim - 1):  # the router's shape, (1, 1, k) for one sequence
            slots = [slots]
        y = self._experts(x, mx.array(slots, dtype=mx.uint32))
        # start computing this layer now: what follows (bookkeeping, the next layer's graph)
        # overlaps it. Scheduling it is MLX's work, like a sync's, not host overhead.
        sync = time.thread_time()
        mx.async_eval(y)
        waited += time.thread_time() - sync
        if self._scorer is not None:
            self._scorer.observe(self._row, np.array(values[k:scores]))
        return y, waited

    def _prompt_chunk(self, x: mx.array, indices: mx.array) -> tuple[mx.array, float | None]:
        """A prefill chunk (many tokens): as _one_token, with numpy over the chunk's ids."""
        sync = time.thread_time()
        inds = np.array(indices)  # host sync
        out, waited = self._serve([(x, inds)], time.thread_time() - sync)
        return out[0], waited

    def serve_prompt(self, parts: list[tuple[mx.array, np.ndarray]]) -> list[mx.array]:
        """This layer over every chunk of a prompt (x, router ids of each): each expert they
        route to is read once, whatever the number of chunks (engine.prefill)."""
        return self._serve(parts, 0.0)[0]

    def _serve(self, parts: list[tuple[mx.array, np.ndarray]], waited: float) -> tuple[list[mx.array], float | None]:
        streamer = self._streamer
        k = parts[0][1].shape[-1]
        inds = parts[0][1].reshape(-1, k) if len(parts) == 1 else np.concatenate([i.reshape(-1, k) for _, i in parts])
        unique = _unique_sorted(inds)
        if streamer.prompt_experts is not None:
            streamer.prompt_experts.update((self._row, e) for e in unique)
        if len(unique) > self._cache.num_slots:
            return self._chunked(parts, unique), None
        slot_of, waited = self._fetch_prompt([x for x, _ in parts], unique, waited)
        if streamer.prompt_favourites:
            streamer.keep_hot(self._row, inds)
        slots = np.asarray(slot_of, dtype=np.uint32)
        return [self._experts(x, mx.array(slots[np.searchsorted(unique, i)])) for x, i in parts], waited

    def _fetch_prompt(self, xs: list[mx.array], unique: list[int], waited: float) -> tuple[list[int], float]:
        """A prompt's experts resident (their slots), and the next layer's predicted ones
        queued when prefetch is on; returns the slots and the CPU time spent waiting so far."""
        streamer = self._streamer
        mode = streamer.mode
        ahead = None
        if mode.enabled and mode.prefill and self._predict_next is not None and self._next_row is not None:
            guesses = [self._predict_next(x) for x in xs]  # building their graphs is host work, syncs not
            sync = time.thread_time()
            many = np.concatenate([np.array(g).reshape(-1) for g in guesses])
            waited += time.thread_time() - sync
            ahead = (self._next_row, _unique_sorted(many))
        slot_of = streamer.fetch(self._row, unique, True, ahead)
        waited += streamer.last_wait_cpu
        return slot_of, waited

    def _chunked(self, parts: list[tuple[mx.array, np.ndarray]], unique: list[int]) -> list[mx.array]:
        """More distinct experts than slots (a long prefill): run them a slot-pool at a time,
        each group over every token of every chunk routed to it."""
        k, dim = parts[0][1].shape[-1], parts[0][0].shape[-1]
        rows = [x.reshape(-1, dim) for x, _ in parts]
        flats = [inds.reshape(-1) for _, inds in parts]
        pieces: list[list[mx.array]] = [[] for _ in parts]
        orders: list[list[np.ndarray]] = [[] for _ in parts]
        size = self._cache.num_slots
        for start in range(0, len(unique), size):
            group = unique[start : start + size]
            slot_of = np.asarray(self._streamer.fetch(self._row, group, bulk=True), dtype=np.uint32)
            computed = []
            for i, flat in enumerate(flats):
                pos = np.nonzero(np.isin(flat, group))[0]
                if not len(pos):
                    continue
                idx = slot_of[np.searchsorted(group, flat[pos])]
                y = self._experts(rows[i][mx.array(pos // k)], mx.array(idx[:, None]))[:, 0, :]
                pieces[i].append(y)
                orders[i].append(pos)
                computed.append(y)
            mx.eval(computed)  # the next group may overwrite these slots
        outs = []
        for (_, inds), piece, order in zip(parts, pieces, orders):
            inverse = np.argsort(np.concatenate(order))
            outs.append((mx.concatenate(piece)[mx.array(inverse)]).reshape(*inds.shape, dim))
        return outs

    def _experts(self, x: mx.array, idx: mx.array) -> mx.array:
        """SwitchGLU/SwitchMLP.__call__ with pool arrays and slot ids (same sorting rule)."""
        x = mx.expand_dims(x, (-2, -3))
        do_sort = idx.size >= 64
        inv_order = None
        shape = idx.shape
        if do_sort:
            flat = idx.flatten()
            order = mx.argsort(flat)
            inv_order = mx.argsort(order)
            x = x.flatten(0, -3)[order // shape[-1]]
            idx = flat[order]
        linear = self._linears
        if self._glu_form:
            up = linear["up_proj"](x, idx, do_sort)
            gate = linear["gate_proj"](x, idx, do_sort)
            y = linear["down_proj"](self._act(up, gate), idx, do_sort)
        else:
            y = linear["fc2"](self._act(linear["fc1"](x, idx, do_sort)), idx, do_sort)
        if do_sort:
            y = mx.unflatten(y[inv_order], 0, shape)
        return y.squeeze(-2)
