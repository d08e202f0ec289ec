"""How one expert-cache budget is shared by slot pools of different expert shapes.

Mixed-precision checkpoints (say layer 0's experts at 8 bits, the rest at 4)
have experts of several sizes; each size gets its own slot pool. Every pool
first gets what one layer's top-k needs (the legal minimum), then the rest of
the budget is split in proportion to the bytes of experts each shape holds.
The sum never exceeds the budget: `--cache-mb` is a hard ceiling.

No MLX: shared by the loader and `outlier inspect`, so both predict the same budget.
"""

from __future__ import annotations

from dataclasses import dataclass

import psutil


@dataclass(frozen=True)
class ShapeGroup:
    """MoE rows whose experts have one shape: they share one slot pool."""

    slot_bytes: int  # one expert in memory, all its tensors
    num_experts: int  # routed experts per layer
    rows: tuple[int, ...]  # indices into the loader's MoE rows

    @property
    def capacity(self) -> int:
        """Slots needed to hold every expert of these rows."""
        return len(self.rows) * self.num_experts

    @property
    def total_bytes(self) -> int:
        return self.capacity * self.slot_bytes

    def minimum_slots(self, top_k: int) -> int:
        return min(top_k, self.capacity)


def minimum_budget(groups: list[ShapeGroup], top_k: int) -> int:
    """Bytes for one layer's top-k experts in every pool: smaller cannot run a token."""
    return sum(g.minimum_slots(top_k) * g.slot_bytes for g in groups)


def total_bytes(groups: list[ShapeGroup]) -> int:
    return sum(g.total_bytes for g in groups)


def split_budget(groups: list[ShapeGroup], budget: int, top_k: int) -> list[int]:
    """Slots per group: the minimum each, the rest in proportion to each group's bytes,
    then whatever whole slots still fit. Raises ValueError below the minimum."""
    slots = [g.minimum_slots(top_k) for g in groups]
    left = budget - sum(n * g.slot_bytes for n, g in zip(slots, groups))
    if left < 0:
        raise ValueError("budget below the minimum")
    whole = total_bytes(groups)
    if whole == 0:
        return slots
    share = [left * g.total_bytes // whole for g in groups]
    for i, g in enumerate(groups):
        extra = min(share[i] // g.slot_bytes, g.capacity - slots[i])
        slots[i] += extra
        left -= extra * g.slot_bytes
    for i in sorted(range(len(groups)), key=lambda i: groups[i].slot_bytes):
        g = groups[i]
        extra = min(left // g.slot_bytes, g.capacity - slots[i])
        slots[i] += extra
        left -= extra * g.slot_bytes
    return slots


def auto_cache_bytes(total_expert_bytes: int, resident_bytes: int, available: int | None = None) -> int:
    """A quarter of what RAM has left after the backbone, and at most a quarter of all
    experts: a larger private cache starves the OS page cache (README, "The expert-cache budget").
    available: memory free before loading (default: this machine's, now)."""
    if available is None:
        available = psutil.virtual_memory().available
    return max(0, min((available - resident_bytes) // 4, total_expert_bytes // 4))


def default_cache_budget(
    total_expert_bytes: int, minimum: int, resident_bytes: int, available: int | None = None
) -> int:
    """The budget used without --cache-mb: auto_cache_bytes, at least the legal minimum,
    at most every expert. `outlier inspect` predicts with the same rule."""
    auto = auto_cache_bytes(total_expert_bytes, resident_bytes, available)
    return min(max(auto, minimum), total_expert_bytes)
