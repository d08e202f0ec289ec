"""outlier_tui/bench/served.py runs both sides on the same workload and reports their ratio (no timing asserted)."""

from __future__ import annotations

from outlier_tui.bench.served import markdown, measure


def test_served_bench_measures_both_sides(checkpoint_factory):
    result = measure(checkpoint_factory("olmoe"), tokens=8, rounds=1)
    (row,) = result["rounds"]
    assert row["tokens"] == row["served_tokens"] > 1  # the same greedy answer on both sides
    assert result["in_process_tps"] > 0 and result["served_tps"] > 0
    assert result["served_ratio"] == row["served_tps"] / row["in_process_tps"]
    assert "ratio served / in-process" in markdown(result)
