"""Counters the engine and reader update and any UI polls.

Updates happen a few times per MoE layer per token under one lock; readers
take a consistent copy with `snapshot()` (the UI polls at <= 10 Hz). A layer
call's per-expert counts are queued as they come and folded into the layer x
expert arrays in bulk when read (or when many are queued): element by element
they cost the decoder more than the rest of its bookkeeping for the call.
"""

from __future__ import annotations

import resource
import sys
import threading
import time
from collections.abc import Iterable

import numpy as np
import psutil

from engine.api import EngineState, ModelInfo, TelemetrySnapshot


def peak_rss_bytes() -> int:
    """The process's lifetime peak resident set size."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak if sys.platform == "darwin" else peak * 1024


class Telemetry:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._process = psutil.Process()
        self.reset_layout((), 0)
        self._state = EngineState.EMPTY
        self._error: str | None = None
        self._model: ModelInfo | None = None
        self._read_stats = None

    FOLD_AT = 4096  # queued layer calls folded in by the writer: memory stays bounded unread

    def reset_layout(self, moe_layers: tuple[int, ...], num_experts: int) -> None:
        shape = (len(moe_layers), num_experts)
        with self._lock:
            self._moe_layers = moe_layers
            self._hits = np.zeros(shape, np.int64)
            self._misses = np.zeros(shape, np.int64)
            self._resident = np.zeros(shape, bool)
            self._last_use = np.zeros(shape, np.int64)
            self._last_miss = np.zeros(shape, np.int64)
            # layer calls not yet in the arrays: (step, row, experts, missed, residency changes)
            self._unfolded: list[tuple[int, int, list[int], list[int], list]] = []
            self._hit_count = 0
            self._miss_count = 0
            self._fold_seconds = 0.0
            self._step = 0
            self._io_wait = 0.0
            self._host = 0.0
            self._prefetch_issued = 0
            self._prefetch_used = 0
            self._prompt_tps = 0.0
            self._generation_tps = 0.0
            self._kv = (0, 0, 0)  # prompt caches: bytes, budget, entries
            self._cache_bytes = 0
            self._cache_peak_bytes = 0
            self._budget = 0
            self._budget_notice = ""
            self._resident_weights = 0

    # ---- writers (engine thread, reader threads) ------------------------------

    def set_model(self, info: ModelInfo | None, read_stats=None) -> None:
        with self._lock:
            self._model = info
            self._budget = info.cache_budget_bytes if info else 0
            self._resident_weights = info.resident_bytes if info else 0
            self._read_stats = read_stats

    def record_budget(self, budget_bytes: int, notice: str) -> None:
        """The expert cache's budget changed while running (engine.memory_guard), and why."""
        with self._lock:
            self._budget = budget_bytes
            self._budget_notice = notice

    def set_state(self, state: EngineState, error: str | None = None) -> None:
        with self._lock:
            self._state = state
            self._error = error

    def begin_step(self) -> int:
        with self._lock:
            self._step += 1
            return self._step

    def record_access(self, row: int, experts: Iterable[int], missed: Iterable[int]) -> None:
        """One layer call's experts and which of them missed."""
        self.record_fetch(row, list(experts), list(missed), [])

    def record_hits(self, calls: list[tuple[int, list[int]]], distinct: bool = False) -> None:
        """Several layer calls' experts, all hits (a forward at a budget that holds every
        expert): as record_access for each, under one lock, in one numpy pass. distinct: no
        row twice (then no np.add.at, several times slower)."""
        if not calls:
            return
        rows = np.array([row for row, experts in calls for _ in experts], dtype=np.intp)
        experts = np.array([e for _, experts in calls for e in experts], dtype=np.intp)
        with self._lock:
            self._fold()
            if distinct:
                self._hits[rows, experts] += 1
            else:
                np.add.at(self._hits, (rows, experts), 1)
            self._last_use[rows, experts] = self._step
            self._hit_count += len(rows)

    def record_fetch(
        self,
        row: int,
        experts: list[int],
        missed: list[int],
        resident: list[tuple[tuple[int, int], bool]],
        cache_bytes: tuple[int, int] | None = None,
        prefetch: tuple[int, int] | None = None,
    ) -> None:
        """One layer call's update in one go: its experts and misses (as record_access), the
        residency changes since the last update, in order ((row, expert), resident), and
        where given the cache's (used, peak) bytes and prefetch (issued, used) counts. The
        lists are kept as given (queued until read): the caller hands them over."""
        with self._lock:
            self._unfolded.append((self._step, row, experts, missed, resident))
            self._hit_count += len(experts) - len(missed)
            self._miss_count += len(missed)
            if cache_bytes is not None:
                self._cache_bytes, self._cache_peak_bytes = cache_bytes
            if prefetch is not None:
                self._prefetch_issued, self._prefetch_used = prefetch
            if len(self._unfolded) >= self.FOLD_AT:
                self._fold()

    def _fold(self) -> None:
        """Apply the queued layer calls to the arrays, in bulk (under the lock). The reader
        that needs the arrays pays: the app's poller at <= 10 Hz, not the decoder per call."""
        unfolded, self._unfolded = self._unfolded, []
        if not unfolded:
            return
        start = time.thread_time()
        used_at: list[int] = []
        used_rows: list[int] = []
        used: list[int] = []
        missed_at: list[int] = []
        missed_rows: list[int] = []
        missed: list[int] = []
        flags = self._resident
        for step, row, experts, misses, resident in unfolded:
            used_at += [step] * len(experts)
            used_rows += [row] * len(experts)
            used += experts
            if misses:
                missed_at += [step] * len(misses)
                missed_rows += [row] * len(misses)
                missed += misses
            for key, flag in resident:  # in order: a slot may change hands twice
                flags[key] = flag
        where = (np.array(used_rows, dtype=np.intp), np.array(used, dtype=np.intp))
        np.add.at(self._hits, where, 1)
        np.maximum.at(self._last_use, where, np.array(used_at))  # steps only grow: the last
        if missed:
            where = (np.array(missed_rows, dtype=np.intp), np.array(missed, dtype=np.intp))
            np.add.at(self._hits, where, -1)
            np.add.at(self._misses, where, 1)
            np.maximum.at(self._last_miss, where, np.array(missed_at))
        self._fold_seconds += time.thread_time() - start

    def set_resident(self, keys: Iterable[tuple[int, int]], resident: bool) -> None:
        with self._lock:
            self._fold()  # after the changes queued before it
            for row, expert in keys:
                self._resident[row, expert] = resident

    def record_cache(self, used_bytes: int, peak_bytes: int) -> None:
        """Expert bytes held in cache slots now and at most (all slot pools together)."""
        with self._lock:
            self._cache_bytes = used_bytes
            self._cache_peak_bytes = peak_bytes

    def add_io_wait(self, seconds: float) -> None:
        with self._lock:
            self._io_wait += seconds

    def add_host_time(self, seconds: float) -> None:
        """Decoder CPU time in streamed layers that is neither MLX compute nor waiting on reads
        (planning, bookkeeping, graph building): the engine's own overhead."""
        with self._lock:
            self._host += seconds

    def record_prefetch(self, issued: int, used: int) -> None:
        with self._lock:
            self._prefetch_issued = issued
            self._prefetch_used = used

    def record_speed(self, prompt_tps: float | None = None, generation_tps: float | None = None) -> None:
        with self._lock:
            if prompt_tps is not None:
                self._prompt_tps = prompt_tps
            if generation_tps is not None:
                self._generation_tps = generation_tps

    def record_kv(self, nbytes: int, budget: int, entries: int) -> None:
        """The prompt caches' bytes (every chat's and client's), their budget and count."""
        with self._lock:
            self._kv = (nbytes, budget, entries)

    # ---- readers -------------------------------------------------------------

    def totals(self) -> dict:
        """Scalar counters (cheap): what per-request stats are computed from."""
        with self._lock:
            stats = self._read_stats
            return {
                "hits": self._hit_count,
                "misses": self._miss_count,
                "io_wait_seconds": self._io_wait,
                "host_seconds": self._host,
                "bytes_read": stats.bytes_read if stats else 0,
                "cache_peak_bytes": self._cache_peak_bytes,
                "prefetch_issued": self._prefetch_issued,
                "prefetch_used": self._prefetch_used,
                "step": self._step,
                "fold_seconds": self._fold_seconds,
            }

    def snapshot(self, mlx_active_bytes: int = 0) -> TelemetrySnapshot:
        rss = self._process.memory_info().rss
        with self._lock:
            self._fold()
            stats = self._read_stats
            return TelemetrySnapshot(
                state=self._state,
                step=self._step,
                moe_layers=self._moe_layers,
                hits=self._hits.copy(),
                misses=self._misses.copy(),
                resident=self._resident.copy(),
                last_use_step=self._last_use.copy(),
                last_miss_step=self._last_miss.copy(),
                bytes_read=stats.bytes_read if stats else 0,
                reads=stats.reads if stats else 0,
                read_seconds=stats.read_seconds if stats else 0.0,
                io_wait_seconds=self._io_wait,
                prefetch_issued=self._prefetch_issued,
                prefetch_used=self._prefetch_used,
                prompt_tps=self._prompt_tps,
                generation_tps=self._generation_tps,
                rss_bytes=rss,
                peak_rss_bytes=max(rss, peak_rss_bytes()),
                mlx_active_bytes=mlx_active_bytes,
                cache_bytes=self._cache_bytes,
                cache_peak_bytes=self._cache_peak_bytes,
                cache_budget_bytes=self._budget,
                budget_notice=self._budget_notice,
                resident_weight_bytes=self._resident_weights,
                kv_cache_bytes=self._kv[0],
                kv_budget_bytes=self._kv[1],
                kv_entries=self._kv[2],
                model=self._model,
                error=self._error,
            )
