"""Prefill a prompt into a KV cache, layer by layer over all its chunks.

A chunk-by-chunk prefill is a forward through every layer per chunk, so a
prompt of n chunks reads every expert it uses up to n times once the cache
cannot hold them all (on Qwen3.5-397B one 2048-token chunk touches nearly all
60 x 512 experts: a 20k-token prompt read the model ten times). Here each
chunk's forward runs as a greenlet on the engine thread (same OS thread, so
MLX's streams stay valid) that pauses at every MoE layer; once all chunks wait
at the same layer, that layer serves them together (StreamedExperts.serve_prompt),
reading each expert at most once per prompt, and the chunks resume in order.
Attention still runs chunk by chunk against the growing cache, in the same
order as before, so the arithmetic (and the logits) are those of mlx-lm's
chunked prefill.

The prefill can also copy the cache as it stands after `snapshot_at` tokens
(a message boundary), layer by layer as each layer passes that point: a
hybrid model's linear-attention state cannot be trimmed back, so the next
turn restores from that copy instead of prefilling the whole chat again.
"""

from __future__ import annotations

import copy
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import mlx.core as mx
import numpy as np
from greenlet import greenlet

from engine.expert_streamer import ExpertStreamer, PrefillCancelled

# mlx-lm's own prefill_step_size: attention runs over chunks of this many tokens.
PREFILL_STEP = 2048

# Architectures whose forward builds its attention mask, before layer 0, from a later layer's
# cache (llama4: cache[3]; bailing_moe_linear: its first attention layer's): when the next chunk
# starts, that layer has not seen the chunks before it yet. Their prompts run chunk by chunk.
CHUNK_BY_CHUNK_ONLY = ("llama4", "bailing_moe_linear")
FALLBACK_NOTICE = (
    "This architecture's forward builds its attention mask from a later layer's cache, so long "
    "prompts run chunk by chunk: each chunk may read the experts again."
)

# hidden-state copies a chunk keeps alive while it waits at an MoE layer (the residual stream,
# the MoE input, its output and the attention output between layers), for the memory estimate
ACTIVATION_COPIES = 4


@dataclass
class PrefillResult:
    logits: mx.array | None  # of the last token; None when cancelled
    snapshot: list | None = None  # the cache after `snapshot_at` tokens, when asked and possible
    experts: set[tuple[int, int]] = field(default_factory=set)  # distinct (row, expert) the prompt routed to
    layer_major: bool = False  # the prompt ran layer by layer over more than one chunk
    waves: int = 0  # groups of chunks run layer by layer one after another (the memory bound)


def activation_bytes(tokens: int, hidden_size: int, dtype_bytes: int = 4) -> int:
    """Hidden states a layer-major prefill of `tokens` keeps between layers (an upper estimate)."""
    return ACTIVATION_COPIES * tokens * hidden_size * dtype_bytes


def chunk_bounds(start: int, end: int, step: int, cut: int | None = None) -> list[tuple[int, int]]:
    """Chunks of at most `step` tokens covering [start, end), one of them ending at `cut`."""
    points = set(range(start, end, step)) | {end}
    if cut is not None and start < cut < end:
        points.add(cut)
    edges = sorted(points)
    return list(zip(edges[:-1], edges[1:]))


def prefill(
    model: Any,
    streamer: ExpertStreamer | None,
    cache: list,
    tokens: Sequence[int],
    start: int,
    *,
    cancel: threading.Event,
    begin_step: Callable[[], object],
    snapshot_at: int | None = None,
    moe_layers: Sequence[int] = (),
    hidden_size: int = 0,
    max_activation_bytes: int | None = None,
    layer_major: bool = True,
) -> PrefillResult:
    """Run tokens[start:] into `cache` (which holds tokens[:start]). On cancel the result's
    logits are None and the cache is left half-filled: the caller throws it away.
    layer_major=False: each chunk through every layer (CHUNK_BY_CHUNK_ONLY architectures)."""
    bounds = chunk_bounds(start, len(tokens), PREFILL_STEP, snapshot_at)
    layered = layer_major and streamer is not None and not streamer.all_resident and len(bounds) > 1
    per_chunk = activation_bytes(PREFILL_STEP, hidden_size)
    if layered and max_activation_bytes is not None and per_chunk * len(bounds) > max_activation_bytes:
        wave = max(2, max_activation_bytes // max(per_chunk, 1))
    else:
        wave = len(bounds)
    result = PrefillResult(logits=None, layer_major=layered, waves=-(-len(bounds) // wave) if layered else 0)
    if streamer is not None:
        streamer.prompt_experts = result.experts
    try:
        if not layered:
            return _chunk_by_chunk(model, cache, tokens, bounds, cancel, begin_step, snapshot_at, result)
        assert streamer is not None
        for i in range(0, len(bounds), wave):
            if cancel.is_set():
                result.logits = None  # an earlier wave's logits are not the prompt's
                return result
            group = bounds[i : i + wave]
            run = _LayerMajor(model, streamer, cache, tokens, group, snapshot_at, moe_layers)
            for _ in group:
                begin_step()
            result.logits, snapshot = run.run()
            if snapshot is not None:
                result.snapshot = snapshot
    except PrefillCancelled:
        result.logits = None
    finally:
        if streamer is not None:
            streamer.prompt_experts = None
    return result


def _chunk_by_chunk(model, cache, tokens, bounds, cancel, begin_step, snapshot_at, result: PrefillResult):
    """Each chunk through every layer: one chunk, every expert resident, or a fallback."""
    for lo, hi in bounds:
        if cancel.is_set():
            result.logits = None
            return result
        begin_step()
        result.logits = model(mx.array(tokens[lo:hi])[None], cache=cache)[:, -1, :]
        mx.eval(result.logits, [c.state for c in cache])
        if hi == snapshot_at:
            result.snapshot = copy.deepcopy(cache)
    return result


class _Finished:
    def __init__(self, logits: mx.array) -> None:
        self.logits = logits


class _LayerMajor:
    """One wave of chunks run layer by layer (see the module's docstring)."""

    def __init__(self, model, streamer: ExpertStreamer, cache: list, tokens, bounds, snapshot_at, moe_layers):
        self.streamer = streamer
        self.cache = cache
        self.bounds = bounds
        self.moe_layers = list(moe_layers)
        # the chunk whose end is the snapshot point, if it is in this wave and layers map to caches
        ends = [hi for _, hi in bounds]
        self.snap_chunk = ends.index(snapshot_at) if snapshot_at in ends else None
        self.snapshot: list | None = [None] * len(cache) if self.snap_chunk is not None else None
        self.snapshot_at = snapshot_at
        self.snapped_to = -1  # cache layers up to here are copied
        self.greenlets = [
            greenlet(lambda lo=lo, hi=hi: _Finished(model(mx.array(tokens[lo:hi])[None], cache=cache)[:, -1, :]))
            for lo, hi in bounds
        ]

    def run(self) -> tuple[mx.array, list | None]:
        streamer = self.streamer
        streamer.layer_major = self
        try:
            waiting = [self._resume(i, g) for i, g in enumerate(self.greenlets)]
            while not isinstance(waiting[0], _Finished):
                module = waiting[0][0]
                if any(isinstance(w, _Finished) or w[0] is not module for w in waiting):
                    raise RuntimeError("layer-major prefill: the chunks' forwards took different paths")
                outputs = module.serve_prompt([(x, inds) for _, x, inds in waiting])
                waiting = [self._resume(i, g, y) for i, (g, y) in enumerate(zip(self.greenlets, outputs))]
            if any(not isinstance(w, _Finished) for w in waiting):
                raise RuntimeError("layer-major prefill: the chunks' forwards took different paths")
            logits = waiting[-1].logits
            mx.eval(logits, [c.state for c in self.cache])
            return logits, self._snapshot()
        finally:
            streamer.layer_major = None
            for g in self.greenlets:  # after an error: unwind the chunks still waiting
                if not g.dead:
                    g.throw()

    def park(self, module, x: mx.array, indices: mx.array) -> mx.array:
        """Called by a chunk's MoE layer: wait until every chunk is here and the layer served them."""
        inds = np.array(indices)  # the host sync every prompt chunk makes at every MoE layer
        parent = greenlet.getcurrent().parent
        assert parent is not None
        return parent.switch((module, x, inds))

    def _resume(self, i: int, g: greenlet, value: Any = None) -> Any:
        out = g.switch(value) if g else g.switch()  # a greenlet not started yet takes no value
        if i == self.snap_chunk:
            self._copy_layers(out)
        return out

    def _copy_layers(self, state: Any) -> None:
        """The snapshot chunk has passed every layer up to the one it waits in (or all of them):
        those layers' caches hold exactly tokens[:snapshot_at], later chunks have not run there."""
        assert self.snapshot is not None
        if isinstance(state, _Finished):
            upto = len(self.cache) - 1
        else:
            row = state[0].row
            upto = self.moe_layers[row] if row < len(self.moe_layers) else -1
        for layer in range(self.snapped_to + 1, upto + 1):
            self.snapshot[layer] = copy.deepcopy(self.cache[layer])
        self.snapped_to = max(self.snapped_to, upto)

    def _snapshot(self) -> list | None:
        """The copied layers, when each copy saw exactly snapshot_at tokens; else None."""
        snap = self.snapshot
        if snap is None or any(c is None for c in snap):
            return None
        for c in snap:
            offset = getattr(c, "offset", None)
            if isinstance(offset, int) and offset != self.snapshot_at:
                return None  # an architecture whose layers do not pause where assumed
        return snap
