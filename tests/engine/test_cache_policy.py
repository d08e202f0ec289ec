"""Cache bookkeeping and eviction policies, checked against brute force."""

import random

import numpy as np
import pytest

from engine.cache_policy import (
    DEFAULT_POLICY,
    BeladyPolicy,
    LFUDAPolicy,
    LFUPolicy,
    LRUPolicy,
    NextUsePolicy,
    RouterScorePolicy,
    make_policy,
    prompt_favourites,
    prompt_scores,
)
from engine.errors import BudgetError
from engine.expert_cache import ExpertCache


def simulate(trace, slots, policy):
    """Replay single-key calls through the real cache bookkeeping; returns hits."""
    cache = ExpertCache(slots, policy)
    hits = 0
    for key in trace:
        plan = cache.plan([key])
        hits += plan.hits
        cache.loaded([key])
    return hits


def brute_force_optimal_hits(trace, slots):
    """Best possible hits over every eviction choice (tiny traces only)."""
    best = 0

    def go(i, resident, hits):
        nonlocal best
        if i == len(trace):
            best = max(best, hits)
            return
        key = trace[i]
        if key in resident:
            go(i + 1, resident, hits + 1)
        elif len(resident) < slots:
            go(i + 1, resident | {key}, hits)
        else:
            for victim in resident:
                go(i + 1, (resident - {victim}) | {key}, hits)

    go(0, frozenset(), 0)
    return best


@pytest.mark.parametrize("seed", range(6))
def test_belady_is_optimal(seed):
    rng = random.Random(seed)
    trace = [rng.randrange(5) for _ in range(11)]
    assert simulate(trace, 2, BeladyPolicy(trace)) == brute_force_optimal_hits(trace, 2)


def test_lru_evicts_least_recently_used():
    cache = ExpertCache(2, LRUPolicy())
    for key in ["a", "b", "a", "c"]:  # c evicts b (a was used after b)
        cache.plan([key])
        cache.loaded([key])
    assert set(cache.resident_keys()) == {"a", "c"}


def test_lfu_evicts_least_frequently_used():
    cache = ExpertCache(2, LFUPolicy())
    for key in ["a", "a", "a", "b", "c"]:
        cache.plan([key])
        cache.loaded([key])
    assert set(cache.resident_keys()) == {"a", "c"}


def test_never_evicts_what_the_call_needs():
    cache = ExpertCache(3, LRUPolicy())
    plan = cache.plan(["a", "b", "c"])
    assert sorted(plan.slots) == [0, 1, 2] and len(plan.loads) == 3
    cache.loaded(["a", "b", "c"])
    plan = cache.plan(["c", "d", "a"])  # must evict b, the only key not in this call
    assert set(cache.resident_keys()) == {"a", "c", "d"}
    assert plan.hits == 2


def test_prefetch_never_evicts_current_call_or_loading_keys():
    cache = ExpertCache(2, LRUPolicy())
    cache.plan(["a", "b"])
    cache.mark_loading(["a", "b"], ticket=None)
    assert cache.plan_prefetch(["x"]) == []
    cache.loaded(["a", "b"])
    assert cache.plan_prefetch(["x"]) == []  # a and b are still protected by the current call
    cache.plan(["a"])  # next call: b may now go
    loads = cache.plan_prefetch(["x"])
    assert loads and loads[0][0] == "x" and set(cache.resident_keys()) == {"a", "x"}
    cache.plan(["x"])
    assert cache.prefetch_used == 1 and cache.prefetch_issued == 1


def test_call_larger_than_cache_is_refused():
    with pytest.raises(BudgetError):
        ExpertCache(2).plan(["a", "b", "c"])


def test_failed_read_frees_the_slot():
    cache = ExpertCache(2)
    cache.plan(["a"])
    cache.drop(["a"])
    assert cache.resident_keys() == [] and cache.used == 0


def reference_hits(trace, slots, victim):
    """Textbook cache replay: victim(resident, i) names the key to evict at step i."""
    resident, hits = [], 0
    for i, key in enumerate(trace):
        if key in resident:
            hits += 1
            continue
        if len(resident) == slots:
            resident.remove(victim(resident, i))
        resident.append(key)
    return hits


def test_lru_and_belady_match_textbook_replays_on_a_long_local_trace():
    """Too long for brute force: LRU must hit exactly as often as a textbook LRU and Belady as
    a textbook farthest-next-use replay, with LRU at most Belady (the cache's bookkeeping, not
    only its policies, is what this checks)."""
    rng = random.Random(1)
    hot = list(range(8))
    trace = [rng.choice(hot) if rng.random() < 0.8 else rng.randrange(64) for _ in range(2000)]

    def least_recent(resident, i):
        return min(resident, key=lambda k: max(j for j in range(i) if trace[j] == k))

    def farthest_next_use(resident, i):
        return max(resident, key=lambda k: next((j for j in range(i, len(trace)) if trace[j] == k), len(trace)))

    lru = simulate(trace, 12, LRUPolicy())
    opt = simulate(trace, 12, BeladyPolicy(trace))
    assert lru == reference_hits(trace, 12, least_recent)
    assert opt == reference_hits(trace, 12, farthest_next_use)
    assert opt > lru


def test_unknown_policy_name():
    with pytest.raises(ValueError):
        make_policy("fifo-ish")


class _Ticket:
    """A read ticket: done or not, failed or not, and whether its reads have started."""

    def __init__(self, done=True, failed=False, started=True):
        self._done, self._failed, self._started = done, failed, started
        self.cancelled = False

    def done(self):
        return self._done

    def failed(self):
        return self._failed

    def cancel(self):
        if self._done or self._started:
            return False
        self.cancelled = self._done = self._failed = True
        return True


def test_finished_prefetch_that_was_never_used_can_be_evicted():
    cache = ExpertCache(3, LRUPolicy())
    cache.plan(["a"])
    cache.loaded(["a"])
    loads = cache.plan_prefetch(["p", "q"])
    cache.mark_loading([k for k, _ in loads], _Ticket(done=True))
    cache.plan(["b"])  # the prediction was wrong: neither p nor q is used
    assert cache.prefetch_issued == 2 and cache.prefetch_used == 0
    for key in ["c", "d", "e"]:  # would raise "no evictable slot" if p, q stayed pinned
        cache.plan([key])
        cache.loaded([key])
    assert set(cache.resident_keys()) == {"c", "d", "e"}


def test_prefetch_still_reading_is_not_evicted():
    cache = ExpertCache(2, LRUPolicy())
    loads = cache.plan_prefetch(["p"])
    cache.mark_loading([k for k, _ in loads], _Ticket(done=False))
    cache.plan(["a"])
    cache.loaded(["a"])
    cache.plan(["b"])  # p is least recently used, but its read still writes the slot
    assert set(cache.resident_keys()) == {"p", "b"}


def test_failed_prefetch_is_read_again_when_needed():
    cache = ExpertCache(2, LRUPolicy())
    loads = cache.plan_prefetch(["p"])
    cache.mark_loading([k for k, _ in loads], _Ticket(done=True, failed=True))
    plan = cache.plan(["p"])
    assert plan.hits == 0 and [k for k, _ in plan.loads] == ["p"]


def test_one_prefetch_batch_never_gives_a_slot_twice():
    """Two reads into one slot race on a reader pool: a batch must not evict its own keys."""
    cache = ExpertCache(3, LRUPolicy())
    cache.plan(["a", "b", "c"])
    cache.loaded(["a", "b", "c"])
    cache.plan(["a", "b"])  # c may go
    loads = cache.plan_prefetch(["p", "q", "r"])
    slots = [slot for _, slot in loads]
    assert len(slots) == len(set(slots)) == 1


def test_prefill_does_not_flush_what_decoding_uses():
    cache = ExpertCache(4, LRUPolicy())
    for key in ["hot1", "hot2"]:
        cache.plan([key])
        cache.loaded([key])
    cache.plan(["p1", "p2"], bulk=True)
    cache.loaded(["p1", "p2"])  # a prompt's experts
    cache.plan(["p3", "p4"], bulk=True)
    cache.loaded(["p3", "p4"])  # evicts p1, p2 first
    assert {"hot1", "hot2"} <= set(cache.resident_keys())
    cache.plan(["new"])
    cache.loaded(["new"])  # decode miss: a prefill-only expert goes
    assert {"hot1", "hot2", "new"} <= set(cache.resident_keys())


def test_disproved_prefetch_not_started_is_cancelled_and_frees_its_slot():
    cache = ExpertCache(3, LRUPolicy())
    loads = cache.plan_prefetch(["p", "q"])
    tickets = {key: _Ticket(done=False, started=key == "q") for key, _ in loads}
    for key, ticket in tickets.items():
        cache.mark_loading([key], ticket)
    cache.plan(["a"])  # the guess was wrong: p had not started, q had
    assert tickets["p"].cancelled and not tickets["q"].cancelled
    assert cache.prefetch_cancelled == 1
    assert set(cache.resident_keys()) == {"q", "a"} and cache.used == 2


def test_cancelling_can_be_turned_off():
    cache = ExpertCache(3, LRUPolicy(), cancel_stale=False)
    loads = cache.plan_prefetch(["p"])
    ticket = _Ticket(done=False, started=False)
    cache.mark_loading([k for k, _ in loads], ticket)
    cache.plan(["a"])
    assert not ticket.cancelled and "p" in cache.resident_keys()


@pytest.mark.parametrize("cold_admit", [True, False])
def test_prefetched_expert_enters_at_the_cold_end(cold_admit):
    cache = ExpertCache(3, LRUPolicy(), cold_admit=cold_admit)
    for key in ["a", "b"]:
        cache.plan([key])
        cache.loaded([key])
    loads = cache.plan_prefetch(["p"])
    cache.mark_loading([k for k, _ in loads], _Ticket(done=True))
    cache.plan(["b"])
    cache.loaded(["b"])  # the guess was wrong
    cache.plan(["c"])
    cache.loaded(["c"])  # evicts the coldest: p if it entered cold, else a
    assert ("p" in cache.resident_keys()) != cold_admit
    assert ("a" in cache.resident_keys()) == cold_admit


def test_prefetched_expert_that_is_used_is_promoted():
    cache = ExpertCache(3, LRUPolicy())
    for key in ["a", "b"]:
        cache.plan([key])
        cache.loaded([key])
    loads = cache.plan_prefetch(["p"])
    cache.mark_loading([k for k, _ in loads], _Ticket(done=True))
    cache.plan(["p"])
    cache.loaded(["p"])  # the guess was right: p is now most recent
    cache.plan(["c"])
    cache.loaded(["c"])
    assert set(cache.resident_keys()) == {"b", "p", "c"}


@pytest.mark.parametrize("promote", [True, False])
def test_promoted_prompt_experts_outlive_the_rest_of_the_prompt(promote):
    cache = ExpertCache(4, LRUPolicy())
    cache.plan(["p1", "p2", "p3"], bulk=True)
    cache.loaded(["p1", "p2", "p3"])
    if promote:
        cache.promote(["p3", "gone"])  # a key not resident is skipped
    for key in ["n1", "n2", "n3"]:  # decode misses: the free slot, then two evictions
        cache.plan([key])
        cache.loaded([key])
    assert ("p3" in cache.resident_keys()) is promote


def test_prompt_favourites_weigh_recent_tokens_most():
    inds = np.array([[[0, 1], [2, 3], [2, 1]]])  # [batch, tokens, top_k]
    # scores with decay 0.5: 0 -> 0.25, 1 -> 0.25 + 1, 2 -> 0.5 + 1, 3 -> 0.5
    assert prompt_scores(inds, decay=0.5).tolist() == [0.25, 1.25, 1.5, 0.5]
    assert prompt_favourites(inds, 2).tolist() == [1, 2]  # least favoured first (decay 0.9)
    assert prompt_favourites(inds, 3).tolist() == [3, 1, 2]
    assert prompt_favourites(inds, 10).tolist() == [0, 3, 1, 2]


def test_router_score_policy_evicts_what_the_router_favours_least():
    policy = RouterScorePolicy(alpha=0.5)
    cache = ExpertCache(3, policy)
    policy.observe_prompt(0, np.array([[0, 1], [1, 2], [1, 2]]))  # 1 most, then 2, then 0
    cache.plan([(0, 0), (0, 1), (0, 2)], bulk=True)
    cache.loaded([(0, 0), (0, 1), (0, 2)])
    plan = cache.plan([(0, 3)])  # a decode miss: expert 0 is the prompt's least favoured
    assert dict(plan.loads) == {(0, 3): plan.slots[0]}
    assert set(cache.resident_keys()) == {(0, 1), (0, 2), (0, 3)}
    # the running average moves with the router: now 2 is the least favoured resident expert
    policy.observe(0, np.array([0.0, 0.6, 0.0, 0.4]))
    cache.plan([(0, 4)])
    assert set(cache.resident_keys()) == {(0, 1), (0, 3), (0, 4)}


def test_router_score_policy_passes_over_experts_in_use():
    policy = RouterScorePolicy()
    policy.reserve(1, 3)
    cache = ExpertCache(2, policy)
    policy.observe(0, np.array([0.1, 0.9, 0.0]))
    cache.plan([(0, 0), (0, 1)])
    cache.loaded([(0, 0), (0, 1)])
    cache.plan([(0, 0), (0, 2)])  # 0 scores lowest but is in use: 1 goes
    assert set(cache.resident_keys()) == {(0, 0), (0, 2)}
    assert policy.choose_victim(lambda key: False) is None


def test_loader_falls_back_to_lru_where_a_router_cannot_be_found(checkpoint_factory, monkeypatch):
    from engine import loader
    from engine.router_guess import RouterGuess

    path = checkpoint_factory("mixtral")
    info = loader.load_streamed_model(path, None, loader.LoadOptions(prefetch=False)).info
    budget = info.expert_bytes * (info.top_k + 2)
    found = loader.load_streamed_model(path, budget, loader.LoadOptions(prefetch=False, policy="router-score"))
    assert isinstance(found.streamer.sole_group().cache.policy, RouterScorePolicy)
    found.close()
    monkeypatch.setattr(RouterGuess, "find", classmethod(lambda cls, *args: None))
    fallback = loader.load_streamed_model(path, budget, loader.LoadOptions(prefetch=False, policy="router-score"))
    assert isinstance(fallback.streamer.sole_group().cache.policy, LRUPolicy)
    fallback.close()


def test_router_score_policy_victim_is_the_lowest_scoring_evictable_resident_expert():
    """The policy keeps its victims table up to date incrementally; the oracle recomputes the
    lowest score among resident, evictable experts from scratch after every operation."""
    rng = np.random.default_rng(3)
    policy = RouterScorePolicy(alpha=0.6)
    policy.reserve(3, 5)
    score = np.zeros((3, 5))
    resident = np.zeros((3, 5), dtype=bool)
    for step in range(400):
        op = rng.integers(4)
        row, expert = int(rng.integers(3)), int(rng.integers(5))
        if op == 0:
            probs = rng.dirichlet(np.ones(5))
            policy.observe(row, probs)
            score[row] = 0.6 * score[row] + 0.4 * probs
        elif op == 1:
            inds = rng.integers(5, size=(int(rng.integers(1, 6)), 2))
            policy.observe_prompt(row, inds)
            counts = np.zeros(5)
            used = prompt_scores(inds)
            counts[: len(used)] = used
            score[row] = counts / counts.sum()
        elif op == 2 and not resident[row, expert]:
            policy.on_insert((row, expert))
            resident[row, expert] = True
        elif op == 3 and resident[row, expert]:
            policy.on_evict((row, expert))
            resident[row, expert] = False
        busy = {(int(r), int(e)) for r, e in rng.integers([3, 5], size=(int(rng.integers(3)), 2))}
        candidates = [(r, e) for r in range(3) for e in range(5) if resident[r, e] and (r, e) not in busy]
        victim = policy.choose_victim(lambda key, busy=busy: key not in busy)
        if not candidates:
            assert victim is None
        else:
            assert victim is not None and score[victim] == min(score[k] for k in candidates), step


def test_a_guess_not_read_is_judged_like_one_read():
    """Decode prefetch off: the guess is only counted, so the judge knows what reading it would
    have wasted (a guess of a resident expert would not have been read) and nothing moves."""
    shadow, real = ExpertCache(5, LRUPolicy()), ExpertCache(5, LRUPolicy())
    for cache in (shadow, real):
        cache.plan(["a", "b"])
        cache.loaded(["a", "b"])
    shadow.shadow_prefetch(["a", "p", "q"])
    loads = real.plan_prefetch(["a", "p", "q"])
    real.mark_loading([k for k, _ in loads], _Ticket(done=True))
    assert shadow.resident_keys() == ["a", "b"] and shadow.used == 2  # nothing was read
    for cache in (shadow, real):
        cache.plan(["p", "c"])  # p guessed right, q wrong
        cache.loaded(["p", "c"])
        cache.plan(["d"])  # judged once
    assert shadow.shadow_wasted == 1 == real.prefetch_issued - real.prefetch_used
    assert real.shadow_wasted == 0


def test_the_default_is_next_use_and_every_named_policy_is_made():
    assert isinstance(make_policy(DEFAULT_POLICY), NextUsePolicy)
    for name in ("lru", "lfu", "lfuda", "router-score", "next-use"):
        make_policy(name)


@pytest.mark.parametrize("policy, evicted_layer", [(NextUsePolicy, 2), (LRUPolicy, 1)])
def test_next_use_evicts_the_layer_just_computed_first(policy, evicted_layer):
    """Three layers, equally used, then layer 0's call needs a third expert: layer 1 is called
    next, layer 2 (just computed) not for a whole token, so its expert is the one to evict;
    LRU evicts layer 1's, the oldest."""
    cache = ExpertCache(6, policy())
    for _ in range(3):
        for layer in range(3):
            keys = [(layer, 0), (layer, 1)]
            cache.plan(keys)
            cache.loaded(keys)
    cache.plan([(0, 0), (0, 1), (0, 2)])
    (gone,) = {(layer, e) for layer in range(3) for e in range(2)} - set(cache.resident_keys())
    assert gone[0] == evicted_layer


def test_next_use_keeps_the_often_used_expert_of_a_layer():
    cache = ExpertCache(3, NextUsePolicy())
    for t in range(8):  # expert 0 of layer 0 every token, experts 1 and 2 once each, long ago
        keys = [(0, 0), (0, 1 + t % 2)] if t < 2 else [(0, 0)]
        cache.plan(keys)
        cache.loaded(keys)
    cache.plan([(0, 3)])
    cache.loaded([(0, 3)])
    cache.plan([(0, 4)])
    assert (0, 0) in cache.resident_keys()


def _reference_next_use(history, rows_seen, last_call, key):
    """From scratch: the policy's expected next use of `key`, from every call of its row."""
    row, expert = key
    fast = slow = NextUsePolicy.PRIOR
    for used in history[row]:  # one entry per call of the row: was the expert in it
        fast = fast * NextUsePolicy.FAST + (1 - NextUsePolicy.FAST) * (expert in used)
        slow = slow * NextUsePolicy.SLOW + (1 - NextUsePolicy.SLOW) * (expert in used)
    p = NextUsePolicy.MIX * fast + (1 - NextUsePolicy.MIX) * slow
    return last_call[row] / len(rows_seen) + 1 / p


def test_next_use_victim_is_the_furthest_expected_next_use_among_evictable_residents():
    """The policy keeps its scores incrementally (only rows that moved are rescored, a call's
    uses folded in at once); the oracle recomputes every score from the whole history."""
    rng = np.random.default_rng(5)
    rows, experts, slots = 3, 6, 7
    cache = ExpertCache(slots, NextUsePolicy())
    history = {r: [] for r in range(rows)}
    last_call, seen, checked = {}, set(), 0
    for step in range(400):
        row = step % rows if rng.random() < 0.8 else int(rng.integers(rows))
        keys = [(row, int(e)) for e in sorted(rng.choice(experts, size=int(rng.integers(1, 4)), replace=False))]
        resident = set(cache.resident_keys())
        history[row].append({e for _, e in keys})
        last_call[row], seen = step + 1, seen | {row}
        need = [k for k in keys if k not in resident]
        plan = cache.plan(keys)
        cache.loaded(keys)
        assert plan.hits == len(keys) - len(need)
        if len(need) == 1 and len(resident) == slots:  # one eviction: the furthest must go
            scores = {k: _reference_next_use(history, seen, last_call, k) for k in resident - set(keys)}
            (gone,) = resident - set(cache.resident_keys())
            assert scores[gone] == pytest.approx(max(scores.values())), step
            checked += 1
    assert checked > 50


def test_lfuda_ages_out_old_favourites():
    cache = ExpertCache(2, LFUDAPolicy())
    for key in ["a"] * 5 + ["b", "c"]:  # b goes for c (a is used more)
        cache.plan([key])
        cache.loaded([key])
    assert set(cache.resident_keys()) == {"a", "c"}
