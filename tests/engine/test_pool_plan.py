"""Sharing one budget between slot pools of different expert shapes."""

import pytest

from engine.pool_plan import ShapeGroup, minimum_budget, split_budget, total_bytes

GROUPS = [
    ShapeGroup(slot_bytes=55_296, num_experts=8, rows=(0,)),
    ShapeGroup(slot_bytes=30_720, num_experts=8, rows=(1, 2, 3)),
]


def _held(slots):
    return sum(n * g.slot_bytes for n, g in zip(slots, GROUPS))


def test_minimum_is_one_layers_top_k_in_every_pool():
    assert minimum_budget(GROUPS, 2) == 2 * 55_296 + 2 * 30_720
    assert split_budget(GROUPS, minimum_budget(GROUPS, 2), 2) == [2, 2]
    with pytest.raises(ValueError):
        split_budget(GROUPS, minimum_budget(GROUPS, 2) - 1, 2)


@pytest.mark.parametrize("budget", [172_032, 200_000, 500_000, 800_000, 1_000_000, 10**9])
def test_never_above_the_budget_and_never_more_than_every_expert(budget):
    slots = split_budget(GROUPS, budget, 2)
    assert _held(slots) <= budget
    assert all(n <= g.capacity for n, g in zip(slots, GROUPS))
    # nothing that still fits is left unused
    assert all(n == g.capacity or budget - _held(slots) < g.slot_bytes for n, g in zip(slots, GROUPS))


def test_a_budget_of_every_expert_holds_every_expert():
    assert split_budget(GROUPS, total_bytes(GROUPS), 2) == [g.capacity for g in GROUPS]


def test_the_rest_is_split_in_proportion_to_each_shapes_bytes():
    slots = split_budget(GROUPS, total_bytes(GROUPS) // 2, 2)
    for n, g in zip(slots, GROUPS):
        assert abs(n * g.slot_bytes / _held(slots) - g.total_bytes / total_bytes(GROUPS)) < 0.05
