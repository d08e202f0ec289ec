"""Telemetry records each layer call in one update:
whoever reads must see exactly what was recorded, in order."""

import numpy as np

from engine.telemetry import Telemetry


def _telemetry() -> Telemetry:
    t = Telemetry()
    t.reset_layout((0, 1, 2), 4)
    return t


def test_counts_and_steps_are_those_recorded():
    t = _telemetry()
    t.begin_step()
    t.record_fetch(0, [1, 3], [3], [((0, 3), True)], cache_bytes=(10, 12))
    t.record_fetch(2, [0, 1], [], [])
    t.begin_step()
    t.record_fetch(0, [3], [], [])
    snap = t.snapshot()
    assert snap.hits.tolist() == [[0, 1, 0, 1], [0, 0, 0, 0], [1, 1, 0, 0]]
    assert snap.misses.tolist() == [[0, 0, 0, 1], [0, 0, 0, 0], [0, 0, 0, 0]]
    assert snap.last_use_step.tolist() == [[0, 1, 0, 2], [0, 0, 0, 0], [1, 1, 0, 0]]
    assert snap.last_miss_step.tolist() == [[0, 0, 0, 1], [0, 0, 0, 0], [0, 0, 0, 0]]
    assert np.nonzero(snap.resident) == (np.array([0]), np.array([3]))
    assert (snap.cache_bytes, snap.cache_peak_bytes) == (10, 12)
    totals = t.totals()
    assert (totals["hits"], totals["misses"], totals["step"]) == (4, 1, 2)
    assert totals["host_seconds"] >= 0


def test_a_key_repeated_in_one_step_counts_each_time():
    t = _telemetry()
    t.record_fetch(1, [2], [2], [])
    t.record_fetch(1, [2], [], [])
    t.record_access(1, [2], [])
    assert t.totals()["hits"] == 2 and t.snapshot().hits[1, 2] == 2 and t.snapshot().misses[1, 2] == 1


def test_residency_changes_apply_in_order():
    t = _telemetry()
    t.record_fetch(1, [0], [0], [((1, 0), True), ((2, 3), True)])
    t.record_fetch(1, [], [], [((1, 0), False)])  # evicted later in the same step
    t.set_resident([(2, 3)], False)
    t.set_resident([(1, 0)], True)  # and read again
    snap = t.snapshot()
    assert snap.resident[1, 0] and not snap.resident[2, 3]
    t.set_resident([(1, 0)], False)  # applied on the next read, after the earlier ones
    assert not t.snapshot().resident.any()


def test_a_forwards_hits_in_one_go_are_those_of_each_call():
    """record_hits (a forward at a budget that holds every expert) must leave exactly what
    record_access call by call leaves, a row seen twice included."""
    calls = [(0, [1, 3]), (1, [0]), (2, [0, 1, 2]), (0, [3])]
    one_by_one, batched = _telemetry(), _telemetry()
    for t in (one_by_one, batched):
        t.begin_step()
        t.record_access(1, [2], [2])
        t.begin_step()
    for row, experts in calls:
        one_by_one.record_access(row, experts, [])
    batched.record_hits(calls)
    distinct = _telemetry()
    distinct.begin_step()
    distinct.record_access(1, [2], [2])
    distinct.begin_step()
    distinct.record_hits([(0, [1, 3]), (2, [0])], distinct=True)
    d = distinct.snapshot()
    assert d.hits[0, 1] == d.hits[0, 3] == d.hits[2, 0] == 1 and d.hits.sum() == 3 and d.last_use_step[0, 3] == 2
    a, b = one_by_one.snapshot(), batched.snapshot()
    for name in ("hits", "misses", "last_use_step", "last_miss_step"):
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name))
    assert b.hits[0, 3] == 2


def test_queued_layer_calls_fold_into_the_arrays_as_applied_one_by_one():
    """record_fetch queues a call's counts; whoever reads folds them in bulk. The arrays must
    be what applying each call in turn leaves (residency flips in order, last use the latest
    step), the totals must agree without a fold, and an unread queue stays bounded."""
    rng = np.random.default_rng(0)
    t = _telemetry()
    t.FOLD_AT = 50
    hits, misses, resident = np.zeros((3, 4), int), np.zeros((3, 4), int), np.zeros((3, 4), bool)
    last_use, last_miss = np.zeros((3, 4), int), np.zeros((3, 4), int)
    for _ in range(120):
        step = t.begin_step()
        for _ in range(int(rng.integers(1, 4))):
            row = int(rng.integers(0, 3))
            used = sorted({int(e) for e in rng.integers(0, 4, 3)})
            missed = [e for e in used if rng.random() < 0.4]
            changes = [((int(rng.integers(0, 3)), int(rng.integers(0, 4))), bool(rng.random() < 0.5)) for _ in range(3)]
            t.record_fetch(row, list(used), list(missed), list(changes))
            for e in used:
                hits[row, e] += e not in missed
                last_use[row, e] = step
            for e in missed:
                misses[row, e] += 1
                last_miss[row, e] = step
            for key, flag in changes:
                resident[key] = flag
            assert len(t._unfolded) < t.FOLD_AT
    totals = t.totals()
    assert (totals["hits"], totals["misses"]) == (hits.sum(), misses.sum())
    snap = t.snapshot()
    for name, want in [
        ("hits", hits),
        ("misses", misses),
        ("resident", resident),
        ("last_use_step", last_use),
        ("last_miss_step", last_miss),
    ]:
        np.testing.assert_array_equal(getattr(snap, name), want, err_msg=name)
