"""A decoded token's whole MoE block as one compiled MLX call, while every expert is resident.

With every expert in its slot nothing waits on the host between the router and the experts,
so the block (router, top-k, experts, shared expert, the weighted sum) can run as one compiled
call instead of the dozen ops mlx-lm builds in Python at every layer of every token. At small
widths building those ops is most of a token: on the scale model (60 layers x 512 experts)
the compiled blocks decode faster than mlx-lm's own (bench/RESULTS.md). The router's ids come
out of the call as a second output, for the streamer's bookkeeping (note_routing), as they do
on the uncompiled path. Where a decoder layer routes outside the block and passes the ids in,
the block is compiled from them on. Anything else (a prompt, a budget that streams, keyword
or non-array arguments, a block compile cannot trace) runs the block as mlx-lm wrote it.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import mlx.core as mx
import mlx.nn as nn

if TYPE_CHECKING:
    from engine.streamed_experts import StreamedExperts


class WholeBlock:
    """One MoE block's compiled decode step (traced at its first resident token)."""

    def __init__(self, call: Callable[..., Any], experts: StreamedExperts) -> None:
        self._call = call  # the block class's own __call__
        self._experts = experts
        self._graph: Callable[..., tuple[Any, mx.array]] | None = None
        self.traced = False
        self.failed: str | None = None  # why compile could not take the block: it runs uncompiled

    def __call__(self, block: nn.Module, *args: Any, **kwargs: Any) -> Any:
        experts = self._experts
        if (  # the cheap tests first: this runs at every layer of every token, streamed too
            self.failed is not None
            or not args
            or not isinstance(args[0], mx.array)
            or not experts.resident_token(args[0])
            or kwargs
            or not all(isinstance(a, mx.array) for a in args[1:])
        ):
            if self._graph is not None and not experts.all_resident:
                self._graph = None  # it holds the pool as it was: let a shrunk pool's memory go
            return self._call(block, *args, **kwargs)
        if self._graph is None:
            self._graph = mx.compile(functools.partial(self._trace, block))
            self.traced = False
        try:
            out, indices = self._graph(*args)
        except Exception as exc:  # only while tracing: an op compile cannot take (a host read, ...)
            if self.traced:
                raise
            self.failed = f"{type(exc).__name__}: {exc}"
            self._graph = None
            return self._call(block, *args)
        self.traced = True
        experts.note_routing(indices)
        return out

    def _trace(self, block: nn.Module, *args: mx.array) -> tuple[Any, mx.array]:
        with self._experts.capture_routing() as routed:
            out = self._call(block, *args)
        if len(routed) != 1:
            raise RuntimeError(f"the block called its experts {len(routed)} times, not once")
        return out, routed[0]


def compile_when_resident(block: nn.Module, experts: StreamedExperts) -> None:
    """Give `block` (the module that calls `experts`) a compiled decode step for the times every
    expert is resident. Its class becomes a subclass with that __call__; its modules, parameters
    and attributes stay as they are (a wrapper module would rename every parameter below it)."""
    whole = getattr(block, "_whole_block", None)
    if isinstance(whole, WholeBlock):  # two expert layers in one block: the trace takes one
        whole.failed = "the block holds more than one expert layer"
        return
    object.__setattr__(block, "_whole_block", WholeBlock(type(block).__call__, experts))
    block.__class__ = _with_whole_block(type(block))


@functools.cache
def _with_whole_block(cls: type) -> type:
    def __call__(self: nn.Module, *args: Any, **kwargs: Any) -> Any:
        return self._whole_block(self, *args, **kwargs)

    # same name and module: reprs and error messages read as mlx-lm's; no slots: same layout
    return type(cls.__name__, (cls,), {"__call__": __call__, "__module__": cls.__module__, "__slots__": ()})
