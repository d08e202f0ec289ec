"""engine.resident_block: a MoE block compiled whole while every expert is resident, and each
case where it must run as written instead. The real blocks of every architecture are checked
against mlx-lm in test_architectures.py (budget "all"); these use a small block of our own."""

from __future__ import annotations

import mlx.core as mx
import mlx.nn as nn
import numpy as np
import pytest

from engine.resident_block import compile_when_resident
from engine.streamed_experts import StreamedExperts

DIM, EXPERTS, TOP_K = 8, 6, 2


class FakeExperts(nn.Module):
    """The StreamedExperts side of the protocol: every expert resident or not, the ids noted
    or captured while a block is traced."""

    def __init__(self) -> None:
        super().__init__()
        self.weight = mx.random.normal((EXPERTS, DIM, DIM), key=mx.random.key(1))
        object.__setattr__(self, "all_resident", True)
        object.__setattr__(self, "noted", [])
        object.__setattr__(self, "_captured", None)

    def resident_token(self, x: mx.array) -> bool:
        return self.all_resident and x.size == x.shape[-1]

    capture_routing = StreamedExperts.capture_routing  # the real one: it sets _captured

    def note_routing(self, indices: mx.array) -> None:
        self.noted.append(np.array(indices).tolist())

    def __call__(self, x: mx.array, indices: mx.array) -> mx.array:
        if self._captured is not None:
            self._captured.append(indices)
        elif self.all_resident:
            self.note_routing(indices)
        return (mx.expand_dims(x, -2)[..., None, :] @ self.weight[indices]).squeeze(-2)


class Block(nn.Module):
    """A MoE block as mlx-lm writes them: router, top-k, experts, weighted sum."""

    def __init__(self) -> None:
        super().__init__()
        self.gate = nn.Linear(DIM, EXPERTS, bias=False)
        self.switch_mlp = FakeExperts()

    def __call__(self, x: mx.array, scale: float = 1.0) -> mx.array:
        scores = mx.softmax(self.gate(x), axis=-1)
        inds = mx.argpartition(-scores, kth=TOP_K - 1, axis=-1)[..., :TOP_K]
        weights = mx.take_along_axis(scores, inds, axis=-1)
        y = self.switch_mlp(x, inds)
        return (y * weights[..., None]).sum(axis=-2) * scale


class HostReadingBlock(Block):
    def __call__(self, x: mx.array, scale: float = 1.0) -> mx.array:
        if x.sum().item() > 1e9:  # a host read of the input: compile cannot trace it
            raise AssertionError
        return super().__call__(x, scale)


def _pair(cls=Block):
    """A compiled block and an uncompiled twin with the same weights."""
    mx.random.seed(0)
    plain, compiled = cls(), cls()
    compiled.update(plain.parameters())
    compile_when_resident(compiled, compiled.switch_mlp)
    return plain, compiled


def _token(seed: int) -> mx.array:
    return mx.random.normal((1, 1, DIM), key=mx.random.key(seed))


def test_a_resident_token_runs_the_block_as_one_compiled_call_with_its_ids_noted():
    plain, compiled = _pair()
    for seed in range(3):
        x = _token(seed)
        np.testing.assert_array_equal(np.array(compiled(x)), np.array(plain(x)))
    whole = compiled._whole_block
    assert whole.traced and whole.failed is None
    assert compiled.switch_mlp.noted == plain.switch_mlp.noted  # the same ids, from the compiled call
    # the block is still what mlx-lm built: its class, its parameters' names
    assert isinstance(compiled, Block) and type(compiled).__name__ == "Block"
    assert sorted(k for k, _ in nn.utils.tree_flatten(compiled.parameters())) == sorted(
        k for k, _ in nn.utils.tree_flatten(plain.parameters())
    )


def test_a_prompt_keyword_arguments_or_a_streaming_budget_run_the_block_as_written():
    plain, compiled = _pair()
    prompt = mx.random.normal((1, 5, DIM), key=mx.random.key(7))
    np.testing.assert_array_equal(np.array(compiled(prompt)), np.array(plain(prompt)))
    x = _token(1)
    np.testing.assert_array_equal(np.array(compiled(x, scale=2.0)), np.array(plain(x, scale=2.0)))
    np.testing.assert_array_equal(np.array(compiled(x, 2.0)), np.array(plain(x, 2.0)))  # not an array
    assert not compiled._whole_block.traced
    compiled(x)
    assert compiled._whole_block._graph is not None
    object.__setattr__(compiled.switch_mlp, "all_resident", False)  # the memory guard shrank the pool
    object.__setattr__(plain.switch_mlp, "all_resident", False)
    np.testing.assert_array_equal(np.array(compiled(x)), np.array(plain(x)))
    assert compiled._whole_block._graph is None  # the old pool's arrays are let go


def test_a_block_compile_cannot_trace_runs_as_written_and_says_why():
    plain, compiled = _pair(HostReadingBlock)
    for seed in range(2):
        x = _token(seed)
        np.testing.assert_array_equal(np.array(compiled(x)), np.array(plain(x)))
    whole = compiled._whole_block
    assert not whole.traced and whole.failed is not None
    assert compiled.switch_mlp.noted == plain.switch_mlp.noted  # noted once per call, not lost


def test_a_block_holding_two_expert_layers_is_not_compiled():
    mx.random.seed(0)
    block = Block()
    compile_when_resident(block, block.switch_mlp)
    compile_when_resident(block, FakeExperts())
    assert block._whole_block.failed is not None
    x = _token(0)
    want = Block()
    want.update(block.parameters())
    np.testing.assert_array_equal(np.array(block(x)), np.array(want(x)))


@pytest.mark.parametrize("calls", [0, 2])
def test_a_block_that_does_not_call_its_experts_once_is_not_compiled(calls):
    class Odd(Block):
        def __call__(self, x: mx.array, scale: float = 1.0) -> mx.array:
            scores = mx.softmax(self.gate(x), axis=-1)
            inds = mx.argpartition(-scores, kth=TOP_K - 1, axis=-1)[..., :TOP_K]
            y = x
            for _ in range(calls):
                y = self.switch_mlp(x, inds).sum(axis=-2)
            return y

    plain, compiled = _pair(Odd)
    x = _token(3)
    np.testing.assert_array_equal(np.array(compiled(x)), np.array(plain(x)))
    assert compiled._whole_block.failed is not None
