"""Memory-pane numbers: RSS history, SSD MB/s from bytes_read deltas."""

from __future__ import annotations

from engine.api import TelemetrySnapshot
from outlier_tui.app.memory_stats import MemoryHistory


def snap(bytes_read: int, rss: int = 100) -> TelemetrySnapshot:
    return TelemetrySnapshot(state="generating", step=1, bytes_read=bytes_read, rss_bytes=rss)


def test_read_rate_from_deltas_over_about_a_second():
    history = MemoryHistory()
    assert history.update(snap(0), now=0.0).read_bytes_per_s == 0.0
    history.update(snap(50 << 20), now=0.5)
    view = history.update(snap(100 << 20), now=1.0)
    assert view.read_bytes_per_s == 100 << 20
    # Older samples drop out of the window: only the last second counts.
    view = history.update(snap(100 << 20), now=2.5)
    assert view.read_bytes_per_s == 0.0


def test_counter_restart_does_not_give_negative_rates():
    history = MemoryHistory()
    history.update(snap(500), now=0.0)
    assert history.update(snap(10), now=0.1).read_bytes_per_s == 0.0


def test_rss_history_is_bounded():
    history = MemoryHistory(history=3)
    for i in range(5):
        view = history.update(snap(0, rss=i), now=float(i))
    assert view.rss_history == (2.0, 3.0, 4.0)


def test_compute_dtype_and_page_cache_come_from_the_model():
    from dataclasses import replace

    from engine.api import ModelInfo

    info = ModelInfo("m", "mixtral", 2, (0, 1), 8, 2, 1, 16, 1, 4, 4, compute_dtype="bfloat16")
    with_cache = replace(info, page_cache="page cache off: a cached re-read of 8.0 MB of experts was 1.2x")
    view = MemoryHistory().update(replace(snap(0), model=with_cache), now=0.0)
    assert (view.compute_dtype, view.page_cache) == ("bfloat16", "off")
    view = MemoryHistory().update(replace(snap(0), model=info), now=0.0)
    assert (view.compute_dtype, view.page_cache) == ("bfloat16", "")
    assert MemoryHistory().update(snap(0), now=0.0).compute_dtype == ""
