"""The streamed replacement for mlx-lm's SwitchGLU and SwitchMLP.

At each MoE layer the router's choice is pulled to the host (the one sync
per layer the design allows), the chosen experts are made resident in cache
slots by the ExpertStreamer (hits in place, misses read by the SSD reader),
and the same gather_qmm / gather_mm maths as SwitchGLU runs over the slot
buffers with expert ids remapped to slot ids.
"""

from __future__ import annotations

import time
import typing
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import mlx.core as mx
import mlx.nn as nn
import numpy as np

from engine.cache_policy import RouterScorePolicy
from engine.expert_streamer import ExpertStreamer, unique_sorted


@dataclass(frozen=True)
class Projection:
    """How one projection multiplies: quantized (group_size, bits, mode) or dense."""

    name: str
    quantized: bool
    group_size: int = 0
    bits: int = 0
    mode: str = "affine"
    has_bias: bool = False


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
        object.__setattr__(self, "_projections", projections)  # plain, as _linears below
        self._bind_pool()
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
        object.__setattr__(self, "_captured", None)  # the router's ids, while a whole block is traced

    @property
    def all_resident(self) -> bool:
        return self._streamer.all_resident

    def resident_token(self, x: mx.array) -> bool:
        """Whether a block's input x is one token and every expert is resident: the case a
        compiled whole block serves (engine.resident_block)."""
        return self._streamer.all_resident and x.size == x.shape[-1]

    @contextmanager
    def capture_routing(self) -> Iterator[list[mx.array]]:
        """While a whole block is traced: the router's ids this layer is called with are kept
        in the list yielded (a traced value cannot be recorded), not noted."""
        captured: list[mx.array] = []
        object.__setattr__(self, "_captured", captured)
        try:
            yield captured
        finally:
            object.__setattr__(self, "_captured", None)

    def note_routing(self, indices: mx.array) -> None:
        """The router's ids of a call made every expert resident (a compiled block's output)."""
        self._streamer.note_routing(self._row, indices)

    def _bind_pool(self) -> None:
        """Bind the pool's arrays into the projections (again after the pool shrank)."""
        linears = {name: _PoolLinear(proj, self._pool.arrays) for name, proj in self._projections.items()}
        # plain attributes: nn.Module keeps dicts as children, found through its slow __getattr__
        object.__setattr__(self, "_linears", linears)
        object.__setattr__(self, "_token_graph", self._compiled(linears))
        object.__setattr__(self, "_row_graph", None)
        self._bound_generation = self._pool.generation

    def _rebind_if_shrunk(self) -> None:
        if self._bound_generation != self._pool.generation:
            self._bind_pool()

    def _compiled(self, linears: dict[str, _PoolLinear]) -> Callable[[mx.array, mx.array], mx.array]:
        """One decoded token's expert graph over these projections, compiled: one call in
        place of six ops built at every layer of every token (shapes fixed: traced once)."""
        return mx.compile(lambda x, idx: self._graph(linears, mx.expand_dims(x, (-2, -3)), idx, False).squeeze(-2))

    def _resident(self) -> tuple[dict[str, _PoolLinear], Callable[[mx.array, mx.array], mx.array]]:
        """With every expert resident (expert e in slot base + e): the projections and the
        token graph over this row's slice of the pool, so the router's ids index it as they
        are, with no op added to mlx-lm's (views: evaluated once, they share its memory)."""
        self._rebind_if_shrunk()
        if self._row_graph is None:
            base = self._streamer.resident_slot_base(self._row)
            end = base + self._streamer.layers[self._row].num_experts
            arrays = {name: array[base:end] for name, array in self._pool.arrays.items()}
            mx.eval(list(arrays.values()))
            linears = {name: _PoolLinear(proj, arrays) for name, proj in self._projections.items()}
            object.__setattr__(self, "_row_graph", (linears, self._compiled(linears)))
        return self._row_graph

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
            if self._captured is not None:
                self._captured.append(indices)
            else:
                self.note_routing(indices)
            linears, token_graph = self._resident()
            if indices.size == indices.shape[-1] < 64:  # one token, unsorted as in SwitchGLU
                return token_graph(x, indices)
            return self._experts(x, indices, linears)
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
        self._rebind_if_shrunk()
        slot_ids = mx.array(slots, dtype=mx.uint32)
        y = self._token_graph(x, slot_ids) if k < 64 else self._experts(x, slot_ids)  # unsorted as in SwitchGLU
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
        unique = unique_sorted(inds)
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
            ahead = (self._next_row, unique_sorted(many))
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

    def _experts(self, x: mx.array, idx: mx.array, linears: dict[str, _PoolLinear] | None = None) -> mx.array:
        """SwitchGLU/SwitchMLP.__call__ with pool arrays and slot ids (same sorting rule);
        linears: other projections than the whole pool's (_resident)."""
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
        if linears is None:
            self._rebind_if_shrunk()
            linears = self._linears
        y = self._graph(linears, x, idx, do_sort)
        if do_sort:
            y = mx.unflatten(y[inv_order], 0, shape)
        return y.squeeze(-2)

    def _graph(self, linears: dict[str, _PoolLinear], x: mx.array, idx: mx.array, do_sort: bool) -> mx.array:
        """The projections of SwitchGLU/SwitchMLP over x, expanded as they expand it."""
        if self._glu_form:
            up = linears["up_proj"](x, idx, do_sort)
            gate = linears["gate_proj"](x, idx, do_sort)
            return linears["down_proj"](self._act(up, gate), idx, do_sort)
        return linears["fc2"](self._act(linears["fc1"](x, idx, do_sort)), idx, do_sort)
