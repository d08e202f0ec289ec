"""RouterScorePolicy.hold/release (the cache keeps a call's own experts out of the victim
search) must choose exactly the victims the plain search chooses."""

import numpy as np
import pytest

from engine.cache_policy import LRUPolicy, NextUsePolicy, RouterScorePolicy
from engine.expert_cache import ExpertCache


class PlainSearch(RouterScorePolicy):
    hold = None  # the cache then skips hold/release


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_hold_changes_no_decision(seed):
    rng = np.random.default_rng(seed)
    rows, experts, slots = 6, 64, 40
    caches = [ExpertCache(slots, RouterScorePolicy()), ExpertCache(slots, PlainSearch())]
    for cache in caches:
        cache.policy.reserve(rows, experts)
    for step in range(300):
        row = step % rows
        bulk = rng.random() < 0.2
        keys = (
            sorted({(row, int(e)) for e in rng.integers(0, experts, 30)})
            if bulk
            else [(row, int(e)) for e in rng.choice(experts, 4, replace=False)]
        )
        probs = rng.dirichlet(np.ones(experts))
        seen = []
        for cache in caches:
            plan = cache.plan(keys, bulk)
            seen.append((plan.loads, plan.slots, sorted(cache.resident_keys())))
            if bulk:
                cache.policy.observe_prompt(row, np.array([[k[1] for k in keys]]))
            else:
                cache.policy.observe(row, probs)
        assert seen[0] == seen[1], step
        np.testing.assert_array_equal(caches[0].policy._victims, caches[1].policy._victims)
    assert not caches[0].policy._held


class WholeTableSearch(NextUsePolicy):
    """The next-use policy's victim search in its first form: one argmax over the whole table
    per victim, the last call's row rescored whole. The fast search must choose exactly this."""

    def choose_victims(self, count, can_evict):  # one at a time, each a whole-table search
        chosen = []
        for _ in range(count):
            victim = self.choose_victim(lambda key: key not in chosen and can_evict(key))
            if victim is None:
                break
            chosen.append(victim)
        return chosen

    def victim_scores(self):  # the last call's row scored again whole, not only where it read
        self._stale |= {row for row, _ in self._rescore}
        self._rescore = []
        return super().victim_scores()

    def choose_victim(self, can_evict):
        victims = self.victim_scores()
        if victims.size == 0:
            return None
        passed, victim = [], None
        while True:
            row, expert = divmod(int(victims.argmax()), victims.shape[1])
            score = victims[row, expert]
            if score == -np.inf:
                break
            if can_evict((row, expert)):
                victim = (row, expert)
                break
            passed.append((row, expert, score))
            victims[row, expert] = -np.inf
        for row, expert, score in passed:
            victims[row, expert] = score
        return victim


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_next_use_per_row_search_chooses_what_a_whole_table_search_does(seed):
    rng = np.random.default_rng(seed)
    rows, experts, slots = 8, 32, 40
    caches = [ExpertCache(slots, NextUsePolicy()), ExpertCache(slots, WholeTableSearch())]
    reading: dict[int, list] = {}
    for step in range(600):
        row = step % rows
        bulk = rng.random() < 0.1
        hot = rng.integers(0, 4, 6)  # some experts far more popular: ties and repeats both occur
        keys = sorted({(row, int(e)) for e in (rng.integers(0, experts, 20) if bulk else hot)})
        ahead = [(int((row + 1) % rows), int(e)) for e in rng.choice(experts, 3, replace=False)]
        # a prefetch still in flight during the next call: not evictable, passed over
        still_reading = rng.random() < 0.5
        seen = []
        for cache in caches:
            plan = cache.plan(keys, bulk)
            cache.loaded(keys)
            cache.loaded(reading.pop(id(cache), []))
            prefetched = cache.plan_prefetch(ahead)  # inserts of another row, and more evictions
            if still_reading:
                reading[id(cache)] = [key for key, _ in prefetched]
            else:
                cache.loaded([key for key, _ in prefetched])
            seen.append((plan.loads, plan.slots, prefetched, sorted(cache.resident_keys())))
        assert seen[0] == seen[1], step
    assert caches[0].policy is not caches[1].policy


class NumpyOnly(NextUsePolicy):
    """Every call's update and every rescore through numpy, as before the Python-float paths,
    and every row scored with expected_next_use's own arithmetic (_score_row takes fewer ops)."""

    _FEW = -1

    def _score_few(self, row, experts):
        idx = np.array(experts)
        scores = np.where(self._resident[row, idx], self.expected_next_use(row, idx), -np.inf)
        self._victims[row, idx] = scores

    def _score_row(self, row):
        self._victims[row] = np.where(self._resident[row], self.expected_next_use(row), -np.inf)


@pytest.mark.parametrize("seed", [0, 1])
def test_next_use_python_float_paths_match_numpy_bit_for_bit(seed):
    rng = np.random.default_rng(seed)
    rows, experts, slots = 6, 48, 50
    caches = [ExpertCache(slots, NextUsePolicy()), ExpertCache(slots, NumpyOnly())]
    for step in range(500):
        row = step % rows
        keys = sorted({(row, int(e)) for e in rng.integers(0, experts, rng.integers(1, 40))})
        bulk = len(keys) > 20
        seen = []
        for cache in caches:
            plan = cache.plan(keys, bulk)
            cache.loaded(keys)
            seen.append((plan.loads, plan.slots))
        assert seen[0] == seen[1], step
        for table in ("_fast", "_slow", "_victims"):
            np.testing.assert_array_equal(getattr(caches[0].policy, table), getattr(caches[1].policy, table))


@pytest.mark.parametrize("policy", [NextUsePolicy, LRUPolicy])
def test_note_use_teaches_the_policy_what_plan_does(policy):
    """A budget that holds every expert records a forward's calls with note_uses (no planning):
    the policy must end where plan() would have left it, so a later shrink evicts the same."""
    rng = np.random.default_rng(3)
    rows, experts = 4, 16
    planned, noted = ExpertCache(rows * experts, policy()), ExpertCache(rows * experts, policy())
    every = [(r, e) for r in range(rows) for e in range(experts)]
    for cache in (planned, noted):
        cache.plan(every, True)
        cache.loaded(every)
    for step in range(0, 200, rows):  # a forward: every row once, then (rarely) a row again
        calls = [sorted({(row, int(e)) for e in rng.integers(0, experts, 5)}) for row in range(rows)]
        calls += [[(1, 2), (1, 3)]] if step % 40 == 0 else []
        for keys in calls:
            assert not planned.plan(keys).loads
        noted.note_uses(calls)
    if policy is NextUsePolicy:
        for table in ("_fast", "_slow", "_calls", "_last_call"):
            np.testing.assert_array_equal(getattr(planned.policy, table), getattr(noted.policy, table))
    assert planned.shrink(20) == noted.shrink(20)
    assert sorted(planned.resident_keys()) == sorted(noted.resident_keys())
