"""The chat app on a remote engine: against `outlier serve` its heatmap follows the server's
expert cache; against mlx_lm.server the panes say there is no expert telemetry."""

from __future__ import annotations

from pathlib import Path

from app_helpers import BUNDLED_THEMES, ready, send, wait_until  # noqa: E402
from serve_helpers import API_KEY  # noqa: E402

from engine.api import GenerationParams  # noqa: E402
from engine.remote import NO_TELEMETRY, RemoteEngine  # noqa: E402
from outlier_tui.app.heatmap import ExpertHeatmap  # noqa: E402
from outlier_tui.app.main import OutlierApp  # noqa: E402
from outlier_tui.app.memory_pane import MemoryPane  # noqa: E402
from outlier_tui.store import ConversationStore  # noqa: E402


def remote_app(engine: RemoteEngine, store: ConversationStore, tmp_path: Path) -> OutlierApp:
    """Wired as `outlier --server URL` wires it: no model folder, the server's first model."""
    return OutlierApp(
        engine,
        store,
        model_dir=None,
        resolve_model=lambda name, on_progress: name or "",
        params=GenerationParams(max_tokens=12),
        telemetry_interval=None,
        theme_dirs=[BUNDLED_THEMES],
        keymap_file=tmp_path / "no-keymap.toml",
        export_dir=tmp_path / "exports",
        clock=lambda: 0.0,
    )


async def test_app_heatmap_follows_the_remote_engine(served, tmp_path):
    store = ConversationStore(tmp_path / "chats.sqlite3")
    engine = RemoteEngine(served.url, api_key=API_KEY)
    try:
        app = remote_app(engine, store, tmp_path)
        async with app.run_test(size=(120, 30)) as pilot:
            await ready(pilot)
            assert app.model_state == "ready", app.last_load_error
            assert app.model_info.moe_layers == (0, 1, 2) and app.model_info.path == served.model
            heatmap = app.query_one(ExpertHeatmap)
            before = app.refresh_telemetry(now=0.0)

            await send(pilot, "Show me the remote heatmap.")
            assert store.messages(app.chat.id)[-1].status == "complete"
            await wait_until(
                lambda: engine.snapshot().step > before.step and engine.snapshot().state == "idle", timeout=30
            )
            after = app.refresh_telemetry(now=1.0)
            await pilot.pause()
            assert heatmap.snapshot is after and after.step > before.step
            assert after.hits.sum() + after.misses.sum() > before.hits.sum() + before.misses.sum()
            assert heatmap.grid is not None and heatmap.grid.used.any()
            assert "hit" in heatmap.render_line(0).text  # the summary line of a live map
    finally:
        engine.close()
        store.close()


async def test_app_against_another_server_says_no_expert_telemetry(mlx_lm_server, tmp_path):
    store = ConversationStore(tmp_path / "chats.sqlite3")
    engine = RemoteEngine(mlx_lm_server)
    try:
        app = remote_app(engine, store, tmp_path)
        async with app.run_test(size=(160, 30)) as pilot:
            await ready(pilot)
            assert app.model_state == "ready", app.last_load_error
            await send(pilot, "Hello")
            assert store.messages(app.chat.id)[-1].status == "complete"
            app.refresh_telemetry(now=1.0)
            await pilot.pause()
            heatmap = app.query_one(ExpertHeatmap)
            assert NO_TELEMETRY[:30] in heatmap.render_line(0).text
            assert "no expert telemetry" in app.query_one(MemoryPane).text
    finally:
        engine.close()
        store.close()
