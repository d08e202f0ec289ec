"""Code blocks for "copy block N", export names, human_bytes and one-line errors."""

from __future__ import annotations

from pathlib import Path

from engine.api import EngineState, GenerationStats, ModelInfo, TelemetrySnapshot
from engine.errors import OutlierError
from outlier_tui.app.text_tools import export_path
from outlier_tui.core.code_blocks import code_block, code_blocks
from outlier_tui.core.format import human_bytes, one_line, stats_line
from outlier_tui.plain.stats import snapshot_table

ANSWER = "Try:\n\n```python\ndef f():\n    return 1\n```\n\nor\n\n~~~sh\nls -l\n~~~\n"


def test_code_blocks_numbered_and_last():
    assert code_blocks(ANSWER) == ["def f():\n    return 1\n", "ls -l\n"]
    assert code_block(ANSWER) == "ls -l\n"
    assert code_block(ANSWER, 1) == "def f():\n    return 1\n"
    assert code_block(ANSWER, 3) is None and code_block(ANSWER, 0) is None
    assert code_block("no code here") is None


def test_unclosed_block_of_a_stopped_answer_counts():
    assert code_block(ANSWER + "\n```js\nlet a = 1") == "let a = 1"
    assert len(code_blocks(ANSWER + "\n```js\nlet a = 1")) == 3


def test_export_path_is_a_safe_file_name(tmp_path: Path):
    assert export_path("Fix: the / bug?", 7, tmp_path) == tmp_path / "outlier-7-fix-the-bug.md"
    assert export_path("!!!", 2, tmp_path).name == "outlier-2-chat.md"


def test_human_bytes():
    assert human_bytes(512) == "512 B"
    assert human_bytes(5 * 2**20) == "5.00 MiB"
    assert human_bytes(220 * 2**30) == "220 GiB"
    assert human_bytes(5.5 * 2**30) == "5.50 GiB"
    assert human_bytes(3 * 2**40) == "3.00 TiB"


def test_one_line():
    assert one_line(OutlierError("Do this.\nmore")) == "Do this."
    assert one_line(ValueError("bad\nvalue")) == "ValueError: bad"
    assert one_line(KeyError()) == "KeyError"


def _stats(**figures) -> GenerationStats:
    unknown = dict.fromkeys(
        (
            "peak_rss_bytes",
            "cache_budget_bytes",
            "cache_peak_bytes",
            "expert_hits",
            "expert_misses",
            "bytes_read",
            "io_wait_seconds",
        )
    )
    return GenerationStats((), 7, 12, 40.0, 9.5, 0.25, **{**unknown, **figures})


def test_stats_line_leaves_out_unknown_figures_and_shows_known_ones():
    unknown = stats_line(_stats())  # a remote server that reports no expert or memory figures
    assert unknown == "12 tok · 9.5 tok/s · first token 0.25s · prompt 7 tok @ 40 tok/s"
    known = stats_line(_stats(expert_hits=3, expert_misses=1, peak_rss_bytes=3 << 20))
    assert known == unknown + " · experts 75% hit · RSS 3.00 MiB"


def test_stats_table_of_a_server_without_telemetry_shows_no_zeros():
    info = ModelInfo("remote-model", "remote", 0, (), 0, 0, 0, 0, 0, 0, 0)
    snap = TelemetrySnapshot(EngineState.IDLE, 0, model=info, generation_tps=9.5, telemetry_note="no telemetry here")
    table = snapshot_table(snap, _stats())
    assert "no telemetry here" in table and "9.5 tok/s" in table and "12 tok" in table
    assert " 0 B" not in table and "0 hits" not in table and "None" not in table and "0 experts" not in table
