"""The side panes follow the engine's telemetry snapshot (polled, never per token)."""

from __future__ import annotations

from dataclasses import replace

from app_helpers import ready, send, synthetic_snapshot
from textual.widgets import Sparkline

from engine.fake import FakeEngine
from outlier_tui.app.heatmap import MISS_GLYPH, ExpertHeatmap
from outlier_tui.app.memory_pane import MemoryPane


def strip_text(heatmap: ExpertHeatmap, y: int) -> str:
    return heatmap.render_line(y).text


async def test_heatmap_updates_from_engine_snapshot(make_app):
    engine = FakeEngine(num_layers=4, num_experts=16)
    app = make_app(engine)
    async with app.run_test(size=(100, 30)) as pilot:
        await ready(pilot)
        heatmap = app.query_one(ExpertHeatmap)
        app.refresh_telemetry(now=0.0)
        await pilot.pause()
        assert heatmap.grid is not None and not heatmap.grid.missed.any()
        await send(pilot, "route some tokens")
        snap = app.refresh_telemetry(now=1.0)
        await pilot.pause()
        assert snap.step > 0
        grid = heatmap.grid
        assert grid.heat.shape[0] == 4 and grid.missed.any()  # first frame: every miss so far
        assert any(MISS_GLYPH in strip_text(heatmap, y) for y in range(1, 5))
        assert "%" in strip_text(heatmap, 1)  # per-layer hit rate
        assert "miss" in strip_text(heatmap, heatmap.size.height - 1)  # legend
        # Idle: the next frame marks only the latest step's misses.
        app.refresh_telemetry(now=2.0)
        await pilot.pause()
        latest = (snap.last_miss_step == snap.step).any(axis=1)
        assert heatmap.grid.missed.any(axis=1).tolist() == latest.tolist()


async def test_headline_model_renders_in_80_columns(make_app):
    snap = synthetic_snapshot(layers=60, experts=512)
    app = make_app(snapshot_source=lambda: snap)
    async with app.run_test(size=(80, 24)) as pilot:
        await ready(pilot)
        app.refresh_telemetry(now=0.0)
        await pilot.pause()
        heatmap = app.query_one(ExpertHeatmap)
        width, height = heatmap.size
        grid = heatmap.grid
        assert grid.heat.shape[0] <= height - 2 and grid.layers_per_row > 1
        assert grid.experts_per_col * grid.heat.shape[1] >= 512
        lines = [strip_text(heatmap, y) for y in range(height)]
        assert lines[0].startswith("60×512") and all(len(line) == width for line in lines)


async def test_memory_pane_shows_rates_from_snapshots(make_app):
    first = synthetic_snapshot()
    later = type(first)(**{**first.__dict__, "bytes_read": first.bytes_read + (50 << 20)})
    current = [first]
    app = make_app(snapshot_source=lambda: current[0])
    async with app.run_test(size=(160, 50)) as pilot:
        await ready(pilot)  # polls at t=0 (the injected clock)
        current[0] = later
        app.refresh_telemetry(now=0.5)
        await pilot.pause()
        text = app.query_one(MemoryPane).text
        assert "11.0 GiB" in text and "peak 12.0 GiB" in text
        assert "100.0 MB/s" in text  # 50 MiB in 0.5 s
        assert "6.00 GiB/8.00 GiB" in text and "2.1" in text and "wait 2.50s" in text


async def test_memory_pane_says_when_the_expert_cache_shrank(make_app):
    notice = "Free memory fell to 900 MB (floor 1,000 MB): the expert cache shrank from 8,192 to 4,096 MB."
    snap = replace(synthetic_snapshot(), cache_budget_bytes=4 << 30, budget_notice=notice)
    app = make_app(snapshot_source=lambda: snap)
    async with app.run_test(size=(160, 50)) as pilot:
        await ready(pilot)
        app.refresh_telemetry(now=0.5)
        await pilot.pause()
        text = " ".join(app.query_one(MemoryPane).text.split())
        assert "/4.00 GiB" in text and "the expert cache shrank from 8,192 to 4,096 MB" in text


async def test_memory_pane_plots_the_latest_rss_samples(make_app):
    base = synthetic_snapshot()
    current = [base]
    app = make_app(snapshot_source=lambda: current[0])
    async with app.run_test(size=(100, 30)) as pilot:
        await ready(pilot)
        pane = app.query_one(MemoryPane)
        width = pane.content_size.width
        for i in range(width + 10):  # RSS grows by 1 GiB per frame
            current[0] = replace(base, rss_bytes=(i + 1) << 30)
            app.refresh_telemetry(now=float(i))
        await pilot.pause()
        spark = pane.query_one(Sparkline)
        assert list(spark.data) == [float((i + 1) << 30) for i in range(10, width + 10)]  # one per column
        line = spark.render_line(0).text
        assert len(line) == width and line[0] == "▁" and line[-1] == "█"
        assert f"RSS      {width + 10}.0 GiB" in pane.text


async def test_side_panes_toggle(make_app):
    app = make_app()
    async with app.run_test() as pilot:
        await ready(pilot)
        await pilot.press("f2")
        assert not app.query_one(ExpertHeatmap).display
        await pilot.press("f3")
        assert not app.query_one("#side").display
        chat_width = app.query_one("#chat-pane").size.width
        assert chat_width == app.size.width
        await pilot.press("f2")
        assert app.query_one("#side").display and app.query_one(ExpertHeatmap).display
