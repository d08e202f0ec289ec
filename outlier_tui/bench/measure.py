"""One configuration measured in this process: load, then run the workload for
several passes through engine.generation.generate (the real code path).

Pass 1 starts with an empty expert cache and cold model files; every later
pass reuses the expert cache the previous one left (a chat's next turn) and,
for streamed runs, starts with the files evicted from the page cache again,
so each miss is a real disk read, as for a model much larger than RAM.
Per-step telemetry (recorded at each forward pass) splits prefill from decode.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from engine.generation import PREFILL_STEP, PromptCacheStore, generate
from engine.telemetry import Telemetry, peak_rss_bytes
from outlier_tui.bench import workload


class StepTelemetry(Telemetry):
    """Telemetry that also keeps (time, counters) at the start of every forward pass."""

    def __init__(self) -> None:
        super().__init__()
        self.steps: list[tuple[float, dict]] = []
        self.trace: list | None = None  # the cache's routing trace, to mark where steps start

    def begin_step(self) -> int:
        totals = self.totals()
        totals["trace_len"] = len(self.trace) if self.trace is not None else 0
        self.steps.append((time.perf_counter(), totals))
        return super().begin_step()


@dataclass
class PassResult:
    figures: dict
    tokens: list[int]


def run_pass(loaded, telemetry: StepTelemetry, tokens: int, long_prompt: bool = False) -> PassResult:
    """One request with no cached prefix; figures for prefill and decode apart."""
    telemetry.steps.clear()
    streamer = loaded.streamer
    issued0, used0, cancelled0 = streamer.prefetch_totals() if streamer is not None else (0, 0, 0)
    stats, _ = generate(
        loaded,
        PromptCacheStore(),
        workload.messages(long_prompt),
        workload.params(tokens),
        threading.Event(),
        lambda text, token, kind: None,
    )
    end_time = time.perf_counter()
    end = telemetry.totals()
    prefill_steps = math.ceil(stats.prompt_tokens / PREFILL_STEP)
    decode_tokens = max(stats.generation_tokens - 1, 0)  # forward passes after the first token
    fig: dict[str, Any] = {  # in-process stats: every figure is known (never None)
        "prompt_tokens": stats.prompt_tokens,
        "generated_tokens": stats.generation_tokens,
        "decode_tokens_per_s": stats.generation_tps,
        "prefill_tokens_per_s": stats.prompt_tps,
        "time_to_first_token_s": stats.time_to_first_token,
        "hits": stats.expert_hits,
        "misses": stats.expert_misses,
        "bytes_read": stats.bytes_read,
        "io_wait_s": stats.io_wait_seconds,
        **_prefetch_delta(streamer, issued0, used0, cancelled0),
    }
    if len(telemetry.steps) > prefill_steps and decode_tokens:
        start_time, start = telemetry.steps[prefill_steps]
        decode_s = end_time - start_time
        keys = ("hits", "misses", "bytes_read", "io_wait_seconds", "host_seconds", "fold_seconds")
        d = {k: end[k] - start[k] for k in keys}
        fig.update(
            {
                "decode_tokens": decode_tokens,
                "trace_decode_offset": start["trace_len"],
                "decode_host_s": d["host_seconds"],
                "host_ms_per_token": 1000 * d["host_seconds"] / decode_tokens,
                # telemetry's per-expert counts folded into its arrays, by whoever read them
                "telemetry_fold_ms_per_token": 1000 * d["fold_seconds"] / decode_tokens,
                "decode_s": decode_s,
                "decode_hits": d["hits"],
                "decode_misses": d["misses"],
                "decode_bytes_read": d["bytes_read"],
                "decode_io_wait_s": d["io_wait_seconds"],
                "io_wait_fraction": d["io_wait_seconds"] / decode_s if decode_s > 0 else 0.0,
                "bytes_read_per_token": d["bytes_read"] / decode_tokens,
            }
        )
    accesses = fig["hits"] + fig["misses"]
    fig["hit_rate"] = fig["hits"] / accesses if accesses else 1.0
    if "decode_hits" in fig:
        dec = fig["decode_hits"] + fig["decode_misses"]
        fig["decode_hit_rate"] = fig["decode_hits"] / dec if dec else 1.0
    fig["prefetch_accuracy"] = fig["prefetch_used"] / fig["prefetch_issued"] if fig["prefetch_issued"] else None
    fig["read_bandwidth_bytes_per_s"] = fig["bytes_read"] / fig["io_wait_s"] if fig["io_wait_s"] > 0 else None
    return PassResult(fig, list(stats.tokens))


def _prefetch_delta(streamer, issued0: int, used0: int, cancelled0: int) -> dict[str, int]:
    """Speculative reads since the marks, over every pool: exact, from the caches themselves
    (telemetry refreshes these only when a prefetch is issued)."""
    issued, used, cancelled = streamer.prefetch_totals() if streamer is not None else (0, 0, 0)
    return {
        "prefetch_issued": issued - issued0,
        "prefetch_used": used - used0,
        "prefetch_cancelled": cancelled - cancelled0,
    }


def run_passes(
    loaded,
    telemetry: StepTelemetry,
    tokens: int,
    passes: int,
    before_pass: Callable[[int], dict | None],
    long_prompt: bool = False,
) -> tuple[list[dict], list[int], list[int]]:
    """All passes; returns (figures per pass, trace offset where each pass starts, last tokens)."""
    figures, offsets, last_tokens = [], [], []
    trace = loaded.streamer.sole_group().cache.trace if loaded.streamer is not None else None
    for i in range(passes):
        cold = before_pass(i)
        offsets.append(len(trace) if trace is not None else 0)
        result = run_pass(loaded, telemetry, tokens, long_prompt)
        if cold is not None:
            result.figures["page_cache_before"] = cold
        figures.append(result.figures)
        last_tokens = result.tokens
    return figures, offsets, last_tokens


def model_files(model_dir: str | Path) -> list[Path]:
    from engine.checkpoint import CheckpointIndex

    return sorted(CheckpointIndex.open(model_dir).file_sizes)


def process_peak_rss() -> int:
    return peak_rss_bytes()
