"""Slot bookkeeping of the expert cache: which expert sits in which slot.

The cache holds a fixed number of slots (budget // bytes per expert). It
does no I/O: `plan` says which experts must be read into which slots, the
streamer does the reading. Keys are (moe_row, expert).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from engine.cache_policy import EvictionPolicy, Key, LRUPolicy
from engine.errors import BudgetError


@dataclass
class Plan:
    """What one call needs: a slot for every key, and which of them to load."""

    slots: list[int]
    loads: list[tuple[Key, int]] = field(default_factory=list)  # misses: (key, slot)
    pending: list[Any] = field(default_factory=list)  # read tickets of hits that may still be loading
    hits: int = 0


class ExpertCache:
    def __init__(
        self,
        num_slots: int,
        policy: EvictionPolicy | None = None,
        record_trace: bool = False,
        cancel_stale: bool = True,
        cold_admit: bool = False,
    ) -> None:
        if num_slots < 1:
            raise BudgetError("the expert cache needs at least one slot")
        self.num_slots = num_slots
        self.policy = policy or LRUPolicy()  # the setter also finds its begin_call
        self.on_evict: Callable[[Key], None] = lambda key: None  # telemetry's hook; the streamer sets it
        self._slot_of: dict[Key, int] = {}
        self._key_of: list[Key | None] = [None] * num_slots
        self._free = list(range(num_slots - 1, -1, -1))
        self._loading: dict[Key, Any] = {}  # key -> read ticket (None: in flight until loaded())
        self._last_prefetch: set[Key] = set()  # judged by the very next call
        self._shadow: set[Key] = set()  # a guess not read (prefetch off): judged the same way
        self._protected: set[Key] = set()
        self.peak_used = 0
        self.prefetch_issued = 0
        self.prefetch_used = 0
        self.prefetch_cancelled = 0
        self.shadow_wasted = 0  # guesses that would have been read and not used, prefetch off
        # a prediction the next call disproves gives its slot back if its read has not started
        self.cancel_stale = cancel_stale
        # speculative experts enter the policy's cold end: a wrong guess is evicted first
        self.cold_admit = cold_admit
        self.trace: list[Key] | None = [] if record_trace else None
        # with the trace: (number of keys, bulk) of every plan() call, to replay it exactly
        self.trace_calls: list[tuple[int, bool]] | None = [] if record_trace else None

    @property
    def policy(self) -> EvictionPolicy:
        return self._policy

    @policy.setter
    def policy(self, policy: EvictionPolicy) -> None:
        self._policy = policy
        # a policy that counts calls (the layer order) is told where each one starts
        self._begin_call: Callable[[list[Key], bool], None] | None = getattr(policy, "begin_call", None)

    # ---- queries -----------------------------------------------------------

    @property
    def used(self) -> int:
        return self.num_slots - len(self._free)

    def slot_of(self, key: Key) -> int | None:
        return self._slot_of.get(key)

    def resident_keys(self) -> list[Key]:
        return list(self._slot_of)

    # ---- planning ----------------------------------------------------------

    def plan(self, keys: Iterable[Key], bulk: bool = False) -> Plan:
        """Give every key a slot for the current call; it stays protected until the next call.
        bulk: the call is a prefill (many tokens), which policies may weigh differently."""
        keys = list(keys)
        if len(keys) > self.num_slots:
            raise BudgetError(f"{len(keys)} experts requested at once but the cache has {self.num_slots} slots")
        self._protected = set(keys)
        if self.trace_calls is not None:
            self.trace_calls.append((len(keys), bulk))
        if self._last_prefetch:
            self.prefetch_used += len(self._last_prefetch & self._protected)
            if self.cancel_stale:
                self._cancel(self._last_prefetch - self._protected)
            self._last_prefetch = set()
        if self._shadow:
            self.shadow_wasted += len(self._shadow - self._protected)
            self._shadow = set()
        plan = Plan(slots=[])
        if self._begin_call is not None:
            self._begin_call(keys, bulk)
        if self.trace is not None:
            self.trace.extend(keys)
        # locals: this runs once per MoE layer per token (hot path)
        slot_of, loading, on_access, slots = self._slot_of, self._loading, self.policy.on_access, plan.slots
        hold = getattr(self.policy, "hold", None)  # keep this call's keys out of the victim search
        if hold is not None:
            hold(keys)
            try:
                return self._plan_keys(keys, bulk, plan, slot_of, loading, on_access, slots)
            finally:
                self.policy.release()  # type: ignore[attr-defined]
        return self._plan_keys(keys, bulk, plan, slot_of, loading, on_access, slots)

    def _plan_keys(self, keys, bulk, plan, slot_of, loading, on_access, slots) -> Plan:
        choose_victims = getattr(self.policy, "choose_victims", None)
        if choose_victims is not None:  # the call's evictions in one search, taken in order below
            short = sum(key not in slot_of for key in keys) - len(self._free)
            if short > 0:
                freed = [self._evict(victim) for victim in choose_victims(short, self._evictable)]
                self._free[:0] = reversed(freed)  # free slots first, then these in order, as one by one
        for key in keys:
            slot = slot_of.get(key)
            if slot is None:
                slot = self._take_slot()
                assert slot is not None  # without allow_fail it raises instead
                self._assign(key, slot, bulk)
                plan.loads.append((key, slot))
            elif key not in loading:
                plan.hits += 1
            elif (ticket := loading[key]) is not None and ticket.failed():  # a failed speculative read
                plan.loads.append((key, slot))  # read it again
            else:
                plan.hits += 1
                plan.pending.append(ticket)
            on_access(key, bulk)
            slots.append(slot)
        self.peak_used = max(self.peak_used, self.used)  # once: a call only adds after it evicts
        return plan

    def note_uses(self, calls: list[list[Key]]) -> None:
        """Calls whose keys are all resident and none loading (a budget that holds every
        expert), in order: the policy learns of them as plan() would tell it, without the
        planning; a policy that counts calls takes a forward's calls in one go."""
        if self.trace is not None:
            for keys in calls:
                self.trace.extend(keys)
                self.trace_calls.append((len(keys), False))  # type: ignore[union-attr]
        begin_calls = getattr(self.policy, "begin_calls", None)
        if begin_calls is not None:  # its begin_call already counts every key as used
            begin_calls(calls)
            return
        on_access = self.policy.on_access
        for keys in calls:
            if self._begin_call is not None:
                self._begin_call(keys, False)
            for key in keys:
                on_access(key, False)

    def plan_prefetch(self, keys: Iterable[Key]) -> list[tuple[Key, int]]:
        """Slots for speculative loads; skips keys already cached and never evicts
        what the current call uses."""
        loads = []
        for key in keys:
            if key in self._slot_of:
                continue
            slot = self._take_slot(allow_fail=True)
            if slot is None:
                break
            self._assign(key, slot, bulk=self.cold_admit)
            self._loading[key] = None  # in flight: later keys of this batch must not evict it
            self._last_prefetch.add(key)
            self.prefetch_issued += 1
            loads.append((key, slot))
        self.peak_used = max(self.peak_used, self.used)
        return loads

    def shadow_prefetch(self, keys: Iterable[Key]) -> None:
        """Note a guess for the next call without reading it: the keys plan_prefetch would
        read (not resident) and the next call does not use count in shadow_wasted, so what
        prefetch would waste is known while it is off."""
        self._shadow = {key for key in keys if key not in self._slot_of}

    def promote(self, keys: Iterable[Key]) -> None:
        """Count resident keys as just used (in order: the last is the hottest), so the policy
        keeps them longest; keys not resident are skipped."""
        for key in keys:
            if key in self._slot_of:
                self.policy.on_access(key)

    def mark_loading(self, keys: Iterable[Key], ticket: Any) -> None:
        for key in keys:
            self._loading[key] = ticket

    def loaded(self, keys: Iterable[Key]) -> None:
        for key in keys:
            self._loading.pop(key, None)

    def drop(self, keys: Iterable[Key]) -> None:
        """Forget keys whose bytes are not valid (a failed read)."""
        for key in keys:
            slot = self._slot_of.pop(key, None)
            self._loading.pop(key, None)
            if slot is not None:
                self._key_of[slot] = None
                self._free.append(slot)
                self.policy.on_evict(key)

    def in_flight(self) -> list[tuple[Key, Any]]:
        """(key, read ticket) of every read that may still be writing a slot."""
        return [(key, ticket) for key, ticket in self._loading.items() if ticket is not None]

    def shrink(self, num_slots: int) -> list[tuple[int, int]]:
        """Hold num_slots slots from now on: the policy's victims go until the rest fit, then
        experts in slots past the new end move down. Returns those moves (from, to) for the
        pool to copy. No read may be in flight (the streamer settles them first)."""
        if num_slots < 1:
            raise BudgetError("the expert cache needs at least one slot")
        if num_slots >= self.num_slots:
            return []
        self._protected, self._last_prefetch, self._shadow = set(), set(), set()
        self._loading.clear()
        while self.used > num_slots:
            victim = self.policy.choose_victim(self._evictable)
            if victim is None:  # what the policy still shields (the call just made) goes last
                victim = next(key for key in reversed(self._key_of) if key is not None)
            self._free.append(self._evict(victim))
        free = [slot for slot in range(num_slots) if self._key_of[slot] is None]
        moves = []
        for slot in range(num_slots, self.num_slots):
            key = self._key_of[slot]
            if key is not None:
                dst = free.pop()
                moves.append((slot, dst))
                self._slot_of[key], self._key_of[dst] = dst, key
        self._key_of = self._key_of[:num_slots]
        self._free = [slot for slot in range(num_slots - 1, -1, -1) if self._key_of[slot] is None]
        self.num_slots = num_slots
        return moves

    # ---- internals ---------------------------------------------------------

    def _cancel(self, keys: Iterable[Key]) -> None:
        """Free the slots of speculative reads that have not started (their tickets are per key)."""
        for key in keys:
            ticket = self._loading.get(key)
            if ticket is not None and not ticket.done() and ticket.cancel():
                self.drop([key])
                self.on_evict(key)
                self.prefetch_cancelled += 1

    def _assign(self, key: Key, slot: int, bulk: bool = False) -> None:
        self._slot_of[key] = slot
        self._key_of[slot] = key
        self.policy.on_insert(key, bulk)

    def _take_slot(self, allow_fail: bool = False) -> int | None:
        if self._free:
            return self._free.pop()
        victim = self.policy.choose_victim(self._evictable)
        if victim is None:
            if allow_fail:
                return None
            raise BudgetError("no evictable slot: every slot holds an expert in use")
        return self._evict(victim)

    def _evict(self, victim: Key) -> int:
        slot = self._slot_of.pop(victim)
        self._key_of[slot] = None
        self._loading.pop(victim, None)
        self.policy.on_evict(victim)
        self.on_evict(victim)
        return slot

    def _evictable(self, key: Key) -> bool:
        """Not used by the current call and no read still writing its slot."""
        if key in self._protected or key not in self._slot_of:
            return False
        ticket = self._loading.get(key, False)
        return ticket is False or (ticket is not None and ticket.done())
