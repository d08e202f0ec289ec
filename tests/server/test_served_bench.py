"""outlier_tui/bench/served.py runs both sides on the same workload and reports their ratio (no timing asserted)."""

from __future__ import annotations

from oracle import oracle_answer

from outlier_tui.bench import workload
from outlier_tui.bench.served import markdown, measure, round_row, summarize


def test_served_bench_measures_both_sides_on_the_oracles_answer(checkpoint_factory):
    path = checkpoint_factory("olmoe")
    result = measure(path, tokens=8, rounds=1)
    (row,) = result["rounds"]
    prompt = workload.messages()

    def chat_ids(tok):
        text = tok.apply_chat_template(prompt, add_generation_prompt=True, tokenize=False)
        return tok.encode(text, add_special_tokens=False)

    answer = oracle_answer(path, chat_ids, 8)  # mlx-lm, fully resident; an EOS is counted as a token
    assert row["tokens"] == row["served_tokens"] == min(8, len(answer) + 1) > 1
    assert result["in_process_tps"] > 0 and result["served_tps"] > 0 and result["served_ratio"] > 0
    assert "ratio served / in-process" in markdown(result)


def test_served_figures_of_rounds_worked_by_hand():
    """Three rounds: (in-process tok/s, served tok/s) = (10, 9), (10, 11), (20, 10). Per round
    the ratios are 0.9, 1.1 and 0.5, median 0.9; the ratio of the medians (10 / 10 = 1.0) would
    hide the third round's halving. CPU seconds (2, 2.5), (3, 3), (4, 2): ratios 0.8, 1.0, 2.0."""
    rows = [
        round_row((10.0, 8, 2.0), (9.0, 8, 2.5)),
        round_row((10.0, 8, 3.0), (11.0, 8, 3.0)),
        round_row((20.0, 8, 4.0), (10.0, 8, 2.0)),
    ]
    assert [r["ratio"] for r in rows] == [0.9, 1.1, 0.5]
    assert [r["cpu_ratio"] for r in rows] == [0.8, 1.0, 2.0]
    got = summarize(rows)
    assert (got["in_process_tps"], got["served_tps"], got["served_ratio"]) == (10.0, 10.0, 0.9)
    assert (got["in_process_cpu_s"], got["served_cpu_s"], got["served_cpu_ratio"]) == (3.0, 2.5, 1.0)
    assert round_row((0.0, 0, 0.0), (5.0, 3, 1.0))["ratio"] == 0.0  # no in-process speed: no ratio
