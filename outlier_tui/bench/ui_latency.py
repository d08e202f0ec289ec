"""Benchmark (not a test): how fast the chat app reacts to keys while an answer streams.

Drives the real OutlierApp headless (Textual's run_test) with the FakeEngine
streaming a long Markdown answer, types characters into the message box and
times each key press until the first screen frame that shows it (frames are
captured at App._display, where Textual hands them to the terminal driver).
Also times Esc until the answer's "stopped" note is on screen.

    python -m outlier_tui.bench.ui_latency [--presses 60] [--size 160x50]

Prints medians; numbers are machine-dependent, compare rows of one run.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
from textual import events

from engine.api import GenerationParams, TelemetrySnapshot
from engine.fake import FakeEngine
from outlier_tui.app.main import OutlierApp
from outlier_tui.app.prompt_input import PromptInput
from outlier_tui.app.themes import bundled_theme_dir
from outlier_tui.store import ConversationStore

MARK = "¤"  # typed character; never appears in the streamed answer


def long_answer(words: int) -> str:
    """Markdown with paragraphs, lists and code blocks, about `words` words long."""
    block = (
        "Here is how the **expert cache** behaves under load, step by step.\n\n"
        "- first the router picks experts\n- then misses go to the reader\n\n"
        "```python\ndef lookup(cache, layer, expert):\n    slot = cache.get((layer, expert))\n"
        "    return slot if slot is not None else cache.load(layer, expert)\n```\n\n"
    )
    n = max(1, words // len(block.split(" ")))
    return block * n


class HeadlineTelemetry:
    """60 layers × 512 experts of telemetry that moves with the fake engine's steps."""

    def __init__(self, engine: FakeEngine, layers: int = 60, experts: int = 512) -> None:
        self.engine = engine
        self.rng = np.random.default_rng(0)
        self.shape = (layers, experts)
        self.hits = np.zeros(self.shape, np.int64)
        self.misses = np.zeros(self.shape, np.int64)
        self.last_use = np.zeros(self.shape, np.int64)
        self.last_miss = np.zeros(self.shape, np.int64)
        self.step = 0

    def snapshot(self) -> TelemetrySnapshot:
        base = self.engine.snapshot()
        while self.step < base.step:  # advance one simulated step per fake token
            self.step += 1
            picked = self.rng.integers(0, self.shape[1], (self.shape[0], 10))
            rows = np.arange(self.shape[0])[:, None]
            hit = self.rng.random(picked.shape) < 0.8
            self.hits[rows, picked] += hit
            self.misses[rows, picked] += ~hit
            self.last_use[rows, picked] = self.step
            self.last_miss[rows, picked] = np.where(hit, self.last_miss[rows, picked], self.step)
        return replace(
            base,
            moe_layers=tuple(range(self.shape[0])),
            hits=self.hits.copy(),
            misses=self.misses.copy(),
            resident=self.last_use > self.step - 200,
            last_use_step=self.last_use.copy(),
            last_miss_step=self.last_miss.copy(),
        )


class FrameClock:
    """Records (time, text) of every frame the app would write to the terminal."""

    def __init__(self, app: OutlierApp) -> None:
        self.frames: list[tuple[float, str]] = []
        original = app._display

        def display(screen, renderable) -> None:
            if renderable is not None:
                # What the driver would write: the terminal escape sequence of the update.
                text = renderable.render_segments(app.console) if hasattr(renderable, "render_segments") else ""
                self.frames.append((time.perf_counter(), text))
            original(screen, renderable)

        app._display = display  # type: ignore[method-assign]

    def first_after(self, t0: float, needle: str) -> float | None:
        for t, text in self.frames:
            if t >= t0 and needle in text:
                return t
        return None


async def run_scenario(
    token_delay: float | None, presses: int, size: tuple[int, int], gap: float
) -> tuple[list[float], float | None]:
    """Key latencies in ms (and Esc-to-stopped ms when streaming) for one scenario."""
    with tempfile.TemporaryDirectory() as tmp:
        # The fake's own routing simulation is kept small (it runs in Python and
        # would compete for the GIL); the heatmap still draws the headline
        # 60×512 model from a moving synthetic snapshot, polled at 10 Hz.
        engine = FakeEngine(script=[long_answer(20_000)], token_delay=token_delay or 0.0)
        store = ConversationStore(Path(tmp) / "bench.sqlite3")
        big = HeadlineTelemetry(engine)
        app = OutlierApp(
            engine,
            store,
            model_dir="bench-model",
            telemetry_interval=0.1,
            snapshot_source=big.snapshot,
            params=GenerationParams(max_tokens=10**6),
            theme_dirs=[bundled_theme_dir()],
            keymap_file=Path(tmp) / "none",
        )
        latencies: list[float] = []
        stop_ms: float | None = None
        async with app.run_test(size=size) as pilot:
            await pilot.pause()
            await app.workers.wait_for_complete()
            prompt = app.query_one(PromptInput)
            prompt.cursor_blink = False
            if token_delay is not None:
                prompt.insert("stream a long answer")
                prompt.action_submit()  # (the pilot's key press would wait for idle)
                await asyncio.sleep(0.5)  # let the answer get going
            clock = FrameClock(app)
            for _ in range(presses):
                t0 = time.perf_counter()
                app.post_message(events.Key(MARK, MARK))
                deadline = t0 + 2.0
                while (t := clock.first_after(t0, MARK)) is None and time.perf_counter() < deadline:
                    await asyncio.sleep(0.0005)
                if t is not None:
                    latencies.append((t - t0) * 1000)
                clock.frames.clear()
                prompt.clear()
                await asyncio.sleep(gap)
            if token_delay is not None:
                assert app.generating, "the answer finished before the measurement did"
                t0 = time.perf_counter()
                app.post_message(events.Key("escape", None))
                deadline = t0 + 10
                while (t := clock.first_after(t0, "stopped")) is None and time.perf_counter() < deadline:
                    await asyncio.sleep(0.001)
                if t is not None:
                    stop_ms = (t - t0) * 1000
            await app.workers.wait_for_complete()
        store.close()
        return latencies, stop_ms


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--presses", type=int, default=60)
    parser.add_argument("--size", default="160x50")
    parser.add_argument("--gap", type=float, default=0.03, help="seconds between presses")
    args = parser.parse_args()
    columns, lines = (int(v) for v in args.size.split("x"))
    size = (columns, lines)
    scenarios = [("idle (no answer)", None), ("streaming 200 tok/s", 0.005), ("streaming 1000 tok/s", 0.001)]
    print(f"key-press-to-frame latency, {args.presses} presses, terminal {size[0]}x{size[1]}")
    print(f"{'scenario':<24}{'median ms':>10}{'p90 ms':>9}{'max ms':>9}{'Esc→stopped ms':>16}")
    for name, delay in scenarios:
        latencies, stop_ms = asyncio.run(run_scenario(delay, args.presses, size, args.gap))
        if not latencies:
            print(f"{name:<24}{'no frames':>10}")
            continue
        ordered = sorted(latencies)
        p90 = ordered[int(0.9 * (len(ordered) - 1))]
        stop = f"{stop_ms:.1f}" if stop_ms is not None else "-"
        print(f"{name:<24}{statistics.median(ordered):>10.1f}{p90:>9.1f}{ordered[-1]:>9.1f}{stop:>16}")


if __name__ == "__main__":
    main()
