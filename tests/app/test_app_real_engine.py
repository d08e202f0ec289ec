"""End to end with the real engine on a tiny checkpoint: an answer appears in the
chat, and the heatmap shows misses (cold cache), then hits."""

from __future__ import annotations

import pytest
from app_helpers import ready, send

from engine.api import GenerationParams
from outlier_tui.app.chat_view import ChatLog
from outlier_tui.app.heatmap import MISS_GLYPH, ExpertHeatmap

pytest.importorskip("mlx.core")

QUESTION = "Write a haiku about disks."


async def test_question_gets_answer_and_heatmap_shows_misses_then_hits(make_app, store, checkpoint_factory):
    from engine import Engine

    path = checkpoint_factory("qwen3_moe")
    # prefetch off: a guessed expert is a hit when the router asks for it, so with prefetch on a
    # cold cache need not show more misses than a warm one (prefetch is tested in tests/engine)
    engine = Engine(prefetch=False)
    try:
        app = make_app(engine, model_dir=str(path), params=GenerationParams(max_tokens=12))
        async with app.run_test(size=(120, 30)) as pilot:
            await ready(pilot)
            assert app.model_state == "ready", app.last_load_error
            assert app.model_info.moe_layers == (0, 1, 2)
            heatmap = app.query_one(ExpertHeatmap)
            cold = app.refresh_telemetry(now=0.0)
            assert cold.misses.sum() == 0 and cold.hits.sum() == 0

            await send(pilot, QUESTION)
            chat_messages = store.messages(app.chat.id)
            assert [m.role for m in chat_messages] == ["user", "assistant"]
            assert chat_messages[1].status == "complete"
            answer = app.query_one(ChatLog).last_answer()
            assert answer.status == "complete" and "tok/s" in str(answer.query_one(".note").render())

            first = app.refresh_telemetry(now=1.0)
            await pilot.pause()
            assert first.misses.sum() > 0  # a cold cache misses
            assert heatmap.grid.missed.any()
            rows = [heatmap.render_line(y).text for y in range(1, 4)]
            assert any(MISS_GLYPH in row for row in rows)
            first_rate = heatmap.grid.total_hit_rate

            await send(pilot, QUESTION)
            second = app.refresh_telemetry(now=2.0)
            await pilot.pause()
            assert second.hits.sum() > first.hits.sum()  # warm cache: hits
            assert heatmap.grid.total_hit_rate > first_rate
            assert store.messages(app.chat.id)[-1].status == "complete"
    finally:
        engine.close()
