"""The benchmark end to end on a tiny checkpoint: every figure is produced by
real runs (no wall-clock assertions), the five ratios are finite numbers."""

import json
import math
import struct

import pytest

from outlier_tui.bench import orchestrate, report
from outlier_tui.bench.plot import write_plot


@pytest.fixture(scope="module")
def result(checkpoint_factory):
    path = checkpoint_factory("mixtral")
    opts = orchestrate.Options(
        model_dir=path,
        budgets=[100.0, 25.0],
        tokens=4,
        passes=2,
        prefetch_budgets=[100.0],
        raw_read_bytes=None,
        memcap_bytes=None,
    )
    return orchestrate.run(opts)


def test_json_has_the_five_ratios_as_finite_numbers(result, tmp_path):
    out = tmp_path / "bench.json"
    report.write_json(result, out)
    data = json.loads(out.read_text())
    for key in orchestrate.RATIO_KEYS:
        assert isinstance(data[key], (int, float)) and math.isfinite(data[key]), key
        op, threshold = data["targets"][key]["target"].split()  # e.g. ">= 0.95", as the table shows it
        assert op in (">=", "<=")
        within = data[key] >= float(threshold) if op == ">=" else data[key] <= float(threshold)
        assert data["targets"][key]["met"] is within, key
    assert {(c["budget_percent"], c["prefetch"]) for c in data["configs"]} == {
        (100.0, False),
        (100.0, True),
        (25.0, False),
    }


def test_lru_replay_reproduces_the_engines_live_hits(result):
    quarter = orchestrate.find(result["configs"], 25.0, False)
    last = quarter["rounds"][0]["passes"][-1]
    replay = quarter["rounds"][0]["replay"]
    assert replay["lru_hits"] == last["hits"]
    assert replay["accesses"] == last["hits"] + last["misses"]
    assert replay["optimal_hits"] >= replay["lru_hits"]


def test_streamed_tokens_match_resident(result):
    for cfg in result["configs"]:
        assert cfg["tokens"] == result["resident"]["tokens"]


def test_markdown_table_lists_every_config(result):
    text = report.markdown(result)
    assert "mlx-lm resident" in text and "25%, prefetch off" in text
    for key in orchestrate.RATIO_KEYS:
        assert key in text


def test_plot_of_a_real_run_is_a_png(result, tmp_path):
    out = tmp_path / "bench.png"
    write_plot(result, out)
    data = out.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = struct.unpack(">II", data[16:24])
    assert width >= 1000 and height >= 400
