"""The benchmark's building blocks: trace replay, disk baseline, budgets."""

import random

import pytest

from engine.cache_policy import BeladyPolicy, LRUPolicy
from engine.checkpoint import CheckpointIndex
from outlier_tui.bench import disk, optimal, pagecache
from outlier_tui.bench.workload import parse_budgets


def _routing_trace(seed, rows=4, experts=16, top_k=2, tokens=60):
    """Per-layer calls of unique sorted experts, skewed like real routing."""
    rng = random.Random(seed)
    trace = []
    for _ in range(tokens):
        for row in range(rows):
            picks = set()
            while len(picks) < top_k:
                picks.add(min(int(rng.expovariate(0.3)), experts - 1))
            trace += [(row, e) for e in sorted(picks)]
    return trace


@pytest.mark.parametrize("seed", range(5))
@pytest.mark.parametrize("slots", [2, 5, 12, 30])
def test_belady_is_never_worse_than_lru(seed, slots):
    trace = _routing_trace(seed)
    result = optimal.compare(trace, slots)
    assert result["optimal_hits"] >= result["lru_hits"]
    assert result["accesses"] == len(trace)


def test_calls_from_trace_rebuilds_per_layer_calls():
    trace = [(0, 1), (0, 3), (1, 2), (1, 5), (0, 1), (0, 4), (0, 5)]
    calls = optimal.calls_from_trace(trace, 8)
    assert [c.keys for c in calls] == [[(0, 1), (0, 3)], [(1, 2), (1, 5)], [(0, 1), (0, 4), (0, 5)]]
    assert not any(c.bulk for c in calls)
    # a long prefill call is planned num_slots keys at a time
    chunks = optimal.calls_from_trace([(0, e) for e in range(5)], 2)
    assert [c.keys for c in chunks] == [[(0, 0), (0, 1)], [(0, 2), (0, 3)], [(0, 4)]]


def test_replay_counts_only_from_the_given_position():
    trace = [(0, 0), (1, 0), (0, 0), (1, 0)]
    calls = optimal.calls_from_trace(trace, 2)
    assert optimal.replay(calls, 2, LRUPolicy()).hits == 2
    later = optimal.replay(calls, 2, BeladyPolicy(trace), count_from=2)
    assert later.accesses == 2 and later.hits == 2


def test_disk_baseline_reads_exactly_the_expert_bytes(checkpoint_factory):
    index = CheckpointIndex.open(checkpoint_factory("mixtral", shards=2))
    keys = disk.sample_experts(index, None)
    layers = index.moe_layers.values()
    expected = sum(t.location.nbytes for layer in layers for t in layer.tensors.values())
    per_expert = sum(len(layer.tensors) for layer in layers) // len(index.moe_layers)
    out = disk.read_stream(index, keys, threads=4)
    assert out["bytes"] == expected
    assert out["reads"] == len(keys) * per_expert
    assert len(set(keys)) == len(keys) == sum(layer.num_experts for layer in layers)

    batches = [[(0, 1), (0, 2)], [], [(1, 7)]]
    out = disk.read_batches(index, batches, threads=2)
    one = sum(r.nbytes for r in disk.expert_reads(index, 0, 0))
    assert out["bytes"] == 3 * one and out["batches"] == 2


def test_expert_reads_match_the_checkpoint_ranges(checkpoint_factory):
    index = CheckpointIndex.open(checkpoint_factory("mixtral"))
    layer = index.moe_layers[sorted(index.moe_layers)[1]]
    reads = disk.expert_reads(index, 1, 3)
    assert [(r.offset, r.nbytes) for r in reads] == [t.expert_range(3) for t in layer.tensors.values()]


def test_sample_is_cut_to_the_byte_budget(checkpoint_factory):
    index = CheckpointIndex.open(checkpoint_factory("mixtral"))
    one = sum(r.nbytes for r in disk.expert_reads(index, 0, 0))
    assert len(disk.sample_experts(index, 5 * one)) == 5


def test_page_cache_residency_is_a_fraction(tmp_path):
    f = tmp_path / "data.bin"
    f.write_bytes(b"x" * 100_000)
    f.read_bytes()
    assert 0.0 <= pagecache.resident_fraction([f]) <= 1.0
    state = pagecache.drop([f], allow_global=False)
    assert 0.0 <= state["resident_fraction"] <= 1.0 and state["method"]


def test_parse_budgets():
    assert parse_budgets("100, 50,25%,10") == [100.0, 50.0, 25.0, 10.0]
    for bad in ("0", "150", "", "x"):
        with pytest.raises(ValueError):
            parse_budgets(bad)


def test_replay_from_the_call_record_flags_prefill_calls():
    trace = [(0, 1), (0, 2), (0, 3), (1, 4), (0, 1)]
    record = [(3, True), (1, False), (1, False)]
    assert optimal.calls_from_record(trace, record) == [
        ([(0, 1), (0, 2), (0, 3)], True),
        ([(1, 4)], False),
        ([(0, 1)], False),
    ]
