"""RouterScorePolicy.hold/release (the cache keeps a call's own experts out of the victim
search) must choose exactly the victims the plain search chooses."""

import numpy as np
import pytest

from engine.cache_policy import RouterScorePolicy
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
