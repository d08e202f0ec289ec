"""Helpers shared by the app tests: waiting for the model, sending, a synthetic snapshot."""

from __future__ import annotations

import asyncio

import numpy as np

from engine.api import ModelInfo, TelemetrySnapshot
from outlier_tui.app.chat_view import AssistantMessage
from outlier_tui.app.prompt_input import PromptInput
from outlier_tui.app.themes import bundled_theme_dir

BUNDLED_THEMES = bundled_theme_dir()


async def ready(pilot) -> None:
    """Wait until the model load (started after the first frame) has finished."""
    await wait_until(lambda: pilot.app.model_state in ("ready", "error"))
    await pilot.app.workers.wait_for_complete()
    await pilot.pause()


async def send(pilot, text: str, wait: bool = True) -> None:
    """Type `text` into the message box and send it.

    wait=True: press Enter and return when the answer is finished and on screen.
    wait=False: return as soon as the answer has started. (Submits without the
    pilot's key press, which waits for the app to go idle: with an answer
    streaming that can be the whole answer.)
    """
    app = pilot.app
    prompt = app.query_one(PromptInput)
    prompt.focus()
    prompt.insert(text)
    before = len(app.query(AssistantMessage))
    if not wait:
        prompt.action_submit()
        await wait_until(lambda: app.generating)
        return
    await pilot.press("enter")
    await wait_until(
        lambda: (
            len(app.query(AssistantMessage)) > before
            and app.query(AssistantMessage).last().status != "partial"
            and not app.generating
        )
    )
    await app.workers.wait_for_complete()
    await pilot.pause()


async def wait_until(predicate, timeout: float = 10.0) -> None:
    """Poll until predicate() is true (tests never assert on wall-clock speed)."""
    loop = asyncio.get_running_loop()
    end = loop.time() + timeout
    while not predicate():
        assert loop.time() < end, "condition not reached"
        await asyncio.sleep(0.01)


def synthetic_snapshot(layers: int = 60, experts: int = 512, step: int = 400, seed: int = 7) -> TelemetrySnapshot:
    """A deterministic snapshot of a big model: some experts hot, some missed at `step`."""
    rng = np.random.default_rng(seed)
    hits = rng.poisson(3.0, (layers, experts)) * (rng.random((layers, experts)) < 0.3)
    misses = (rng.random((layers, experts)) < 0.2).astype(np.int64)
    resident = (hits > 0) | (misses > 0)
    use_age = rng.geometric(0.05, (layers, experts)) - 1  # mostly recent
    miss_age = rng.geometric(0.004, (layers, experts)) - 1  # misses: spread out
    last_use = np.where(resident, np.maximum(step - use_age, 1), 0)
    last_miss = np.where(misses > 0, np.maximum(step - miss_age, 1), 0)
    info = ModelInfo(
        path="/models/demo",
        model_type="qwen3_5_moe",
        num_layers=layers,
        moe_layers=tuple(range(layers)),
        num_experts=experts,
        top_k=10,
        expert_bytes=7_077_888,
        total_expert_bytes=layers * experts * 7_077_888,
        resident_bytes=5_500_000_000,
        cache_budget_bytes=8 << 30,
        cache_slots=1200,
    )
    return TelemetrySnapshot(
        state="idle",
        step=step,
        moe_layers=tuple(range(layers)),
        hits=hits.astype(np.int64),
        misses=misses,
        resident=resident,
        last_use_step=last_use.astype(np.int64),
        last_miss_step=last_miss.astype(np.int64),
        bytes_read=3 << 30,
        reads=int(misses.sum()),
        read_seconds=4.0,
        io_wait_seconds=2.5,
        prompt_tps=85.0,
        generation_tps=2.1,
        rss_bytes=11 << 30,
        peak_rss_bytes=12 << 30,
        mlx_active_bytes=9 << 30,
        cache_bytes=6 << 30,
        cache_peak_bytes=7 << 30,
        cache_budget_bytes=8 << 30,
        resident_weight_bytes=5_500_000_000,
        model=info,
    )
