"""When free memory falls below a floor while a model runs, the expert cache shrinks
(engine/memory_guard.py): its pools are reallocated smaller, the policy picks what stays,
the answer is still exactly mlx-lm's fully resident, and the user is told."""

import numpy as np
import pytest
from checkpoints import resident_oracle
from oracle import greedy_run

from engine.cache_policy import LRUPolicy
from engine.errors import BudgetError
from engine.expert_cache import ExpertCache
from engine.loader import LoadOptions, load_streamed_model
from engine.memory_guard import MemoryGuard

MB = 1024 * 1024


class FakeMemory:
    """Free memory and a clock the test sets."""

    def __init__(self, free: int) -> None:
        self.free, self.now = free, 0.0

    def available(self) -> int:
        return self.free

    def clock(self) -> float:
        self.now += 10.0  # every check is past the guard's interval
        return self.now


def test_cache_shrink_keeps_the_policys_choice_and_moves_the_rest_down():
    cache = ExpertCache(6, LRUPolicy())
    for key in [(0, e) for e in range(6)]:  # slots 0..5 in order; (0, 0) least recent
        cache.plan([key])
    cache.plan([(0, 4)])  # used again: among the most recent
    moves = cache.shrink(3)
    kept = sorted(cache.resident_keys())
    assert kept == [(0, 3), (0, 4), (0, 5)]  # LRU's victims went: 0, 1, 2
    assert cache.num_slots == 3 and cache.used == 3
    assert sorted(cache.slot_of(k) for k in kept) == [0, 1, 2]
    assert sorted(moves) == [(3, moves[0][1]), (4, moves[1][1]), (5, moves[2][1])]
    assert {dst for _, dst in moves} == {0, 1, 2}
    plan = cache.plan([(0, 9)])  # a miss still finds a slot inside the new size
    assert plan.loads and plan.loads[0][1] < 3
    with pytest.raises(BudgetError):
        cache.shrink(0)
    assert cache.shrink(5) == []  # never grows


@pytest.mark.parametrize("budget_experts", ["all", 6])
def test_a_shrink_mid_answer_keeps_the_answer_exact_and_frees_the_pool(checkpoint_factory, budget_experts):
    """From a budget holding every expert (no misses, fixed slots) or a small one, the guard
    shrinks the cache halfway through decoding; tokens and logits stay mlx-lm's."""
    path = checkpoint_factory("mixtral")
    oracle_model, tokenizer = resident_oracle(path)
    want_tokens, want_logits = greedy_run(oracle_model, tokenizer, steps=20)
    info = load_streamed_model(path, None, LoadOptions(prefetch=False)).info
    budget = info.total_expert_bytes if budget_experts == "all" else info.expert_bytes * budget_experts
    loaded = load_streamed_model(path, budget, LoadOptions(prefetch=True))
    streamer = loaded.streamer
    pool = streamer.sole_group().pool
    before = pool.nbytes
    memory = FakeMemory(free=10_000 * MB)
    guard = MemoryGuard(streamer, info.top_k, loaded.telemetry, 1000 * MB, memory.available, memory.clock)
    steps = iter(range(100))

    def after_step():
        if next(steps) == 10:
            memory.free = 1000 * MB - before // 2  # another app took memory: half the pool must go
        guard.check()

    got_tokens, got_logits = greedy_run(loaded.model, loaded.tokenizer, steps=20, after_step=after_step)
    assert got_tokens == want_tokens
    np.testing.assert_array_equal(np.array(got_logits), np.array(want_logits))
    assert pool.nbytes <= before // 2 + pool.nbytes // pool.num_slots
    assert pool.num_slots >= info.top_k
    assert next(iter(pool.arrays.values())).shape[0] == pool.num_slots  # reallocated, not just masked
    snap = loaded.telemetry.snapshot()
    assert snap.cache_budget_bytes == pool.nbytes
    assert "expert cache shrank" in snap.budget_notice and "Free memory fell" in guard.notice
    assert snap.resident.sum() == streamer.sole_group().cache.used  # the heatmap sees the evictions
    if budget_experts == "all":  # each MoE block ran compiled, then let go of the old pool's arrays
        blocks = [m._whole_block for _, m in loaded.model.named_modules() if hasattr(m, "_whole_block")]
        assert blocks and all(b.traced and b._graph is None for b in blocks)
    loaded.close()


def test_the_guard_stops_at_one_layers_experts_and_stays_quiet_above_the_floor(checkpoint_factory):
    path = checkpoint_factory("mixtral")
    info = load_streamed_model(path, None, LoadOptions(prefetch=False)).info
    loaded = load_streamed_model(path, info.expert_bytes * 8, LoadOptions(prefetch=False))
    memory = FakeMemory(free=2000 * MB)
    guard = MemoryGuard(loaded.streamer, info.top_k, loaded.telemetry, 1000 * MB, memory.available, memory.clock)
    assert guard.check() == "" and loaded.streamer.sole_group().pool.num_slots == 8
    memory.free = 0  # far below: as small as a layer's experts allow, and said once
    assert "shrank" in guard.check()
    assert loaded.streamer.sole_group().pool.num_slots == info.top_k
    assert guard.check() == ""  # nothing left to give
    greedy_run(loaded.model, loaded.tokenizer, steps=3)  # still answers
    loaded.close()
