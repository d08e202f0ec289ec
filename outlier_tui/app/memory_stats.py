"""Turns successive telemetry snapshots into the numbers the memory pane shows.

Pure (the caller passes the clock reading), so rates derived from counter
deltas, like SSD MB/s, are deterministic in tests.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

from engine.api import TelemetrySnapshot

RATE_WINDOW_S = 1.0  # SSD throughput is averaged over about this long


@dataclass(frozen=True)
class MemoryView:
    """One frame of the memory pane."""

    rss_bytes: int
    peak_rss_bytes: int
    rss_history: tuple[float, ...]
    mlx_active_bytes: int
    cache_bytes: int
    cache_budget_bytes: int
    resident_weight_bytes: int
    prompt_tps: float
    generation_tps: float
    read_bytes_per_s: float
    bytes_read: int
    io_wait_seconds: float
    kv_cache_bytes: int = 0  # every chat's and client's prompt caches
    kv_budget_bytes: int = 0
    kv_entries: int = 0
    note: str | None = None  # why there is no memory telemetry (a server that sends none)
    budget_notice: str = ""  # the expert cache shrank: free memory ran low (engine.memory_guard)
    compute_dtype: str = ""  # what the model computes in (ModelInfo.compute_dtype)
    page_cache: str = ""  # "on", "off" or "" (unknown): expert reads through the OS page cache


class MemoryHistory:
    """Keeps the RSS history and recent bytes_read samples between snapshots."""

    def __init__(self, history: int = 240) -> None:
        self._rss: deque[float] = deque(maxlen=history)
        self._reads: deque[tuple[float, int]] = deque()

    def update(self, snap: TelemetrySnapshot, now: float) -> MemoryView:
        """Fold one snapshot taken at clock reading `now` into the history."""
        self._rss.append(float(snap.rss_bytes))
        if self._reads and snap.bytes_read < self._reads[-1][1]:
            self._reads.clear()  # counters restarted (a new model was loaded)
        self._reads.append((now, snap.bytes_read))
        while len(self._reads) > 2 and now - self._reads[1][0] >= RATE_WINDOW_S:
            self._reads.popleft()
        (t0, b0), (t1, b1) = self._reads[0], self._reads[-1]
        rate = (b1 - b0) / (t1 - t0) if t1 > t0 else 0.0
        return MemoryView(
            rss_bytes=snap.rss_bytes,
            peak_rss_bytes=snap.peak_rss_bytes,
            rss_history=tuple(self._rss),
            mlx_active_bytes=snap.mlx_active_bytes,
            cache_bytes=snap.cache_bytes,
            cache_budget_bytes=snap.cache_budget_bytes,
            resident_weight_bytes=snap.resident_weight_bytes,
            prompt_tps=snap.prompt_tps,
            generation_tps=snap.generation_tps,
            read_bytes_per_s=rate,
            bytes_read=snap.bytes_read,
            io_wait_seconds=snap.io_wait_seconds,
            kv_cache_bytes=snap.kv_cache_bytes,
            kv_budget_bytes=snap.kv_budget_bytes,
            kv_entries=snap.kv_entries,
            note=snap.telemetry_note,
            budget_notice=snap.budget_notice,
            compute_dtype=snap.model.compute_dtype if snap.model else "",
            page_cache=_on_off(snap.model.page_cache) if snap.model else "",
        )


def _on_off(page_cache: str) -> str:
    """'on' / 'off' from ModelInfo.page_cache ("page cache on: ..."), '' when not said."""
    words = page_cache.replace(":", " ").split()
    return words[2] if len(words) > 2 and words[:2] == ["page", "cache"] else ""
