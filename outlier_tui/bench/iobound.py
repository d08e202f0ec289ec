"""`outlier bench --io-bound`: the streamed engine where reads dominate a token.

Every streamed configuration runs in a child cgroup whose reads from the
model's disk are capped (outlier_tui.bench.throttle), starting cold (files evicted from
the page cache), for one request: a prefill, then `tokens` decode steps.
Figures measured in the same run:

- compute-only: the same request with every expert resident (100% budget,
  unthrottled): decode seconds per token and prefill time with no reads;
- host overhead: compute only, then the default settings at 25%, unthrottled, a few
  rounds: decode time per token that is neither MLX compute nor waiting on reads;
- per budget: today's design (synchronous reads, no prefetch, LRU) and the
  default settings (prefetch decided by the engine at load), throttled;
- optionally the prefetch variants of outlier_tui.bench.variants at 25%, throttled.

The limit per decode token is max(compute-only seconds per token, the
offline-optimal (Belady) misses of that run's own routing trace x bytes per
expert / bandwidth): no engine can beat either.
"""

from __future__ import annotations

import json
import statistics
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from outlier_tui.bench import pagecache
from outlier_tui.bench.orchestrate import ConfigRunner, budget_bytes, machine
from outlier_tui.bench.throttle import ReadThrottle, run_throttled

MB = 1024 * 1024
KEYS = ("io_bound_limit_s", "io_bound_vs_limit", "io_bound_speedup", "ttft_vs_limit", "host_overhead_ms_per_token")


@dataclass
class Options:
    model_dir: Path
    disk_bytes_per_s: int = 25_000_000
    budgets: list[float] = field(default_factory=lambda: [25.0, 10.0])
    tokens: int = 32
    long_prompt: bool = True
    variants: list[str] = field(default_factory=list)  # outlier_tui.bench.variants names, run at 25%
    reader_threads: int = 4
    host_rounds: int = 3  # of the unthrottled host-overhead measure (compute only, then streamed)
    timeout_s: float = 3600.0
    command: str = ""
    progress: Callable[[str], None] = lambda message: None


def run(opts: Options) -> dict:
    """Every figure of one I/O-bound run, or {"skipped": why} where reads cannot be throttled."""
    with tempfile.TemporaryDirectory(prefix="outlier-iobound-") as tmp:
        work = ConfigRunner(Path(tmp), opts.model_dir, opts.timeout_s, opts.progress)
        probe = work.config("probe", [])
        files = [Path(f) for f in probe["files"]]
        return run_throttled(
            files, opts.disk_bytes_per_s, opts.command, lambda throttle: _run(work, opts, probe, files, throttle)
        )


def host_overhead(opts: Options) -> dict:
    """Only the host-overhead rounds of the study (see host_rounds), no root or cgroup needed."""
    with tempfile.TemporaryDirectory(prefix="outlier-host-") as tmp:
        work = ConfigRunner(Path(tmp), opts.model_dir, opts.timeout_s, opts.progress)
        probe = work.config("probe", [])
        host = host_rounds(work, opts, probe, [Path(f) for f in probe["files"]])
    return {
        "machine": machine(),
        "command": opts.command,
        "model": probe,
        "settings": {"tokens": opts.tokens, "reader_threads": opts.reader_threads, "rounds": opts.host_rounds},
    } | host


def host_rounds(work: ConfigRunner, opts: Options, probe: dict, files: list[Path]) -> dict:
    """opts.host_rounds x (compute only, then the default settings at 25% from cold files), unthrottled,
    short prompt, each in a fresh process. A round's overhead is what streaming adds to a decode
    token besides waiting on reads: streamed seconds per token - compute-only seconds per token -
    read wait per token (wall time, so per-layer host syncs count and host work that overlaps
    MLX compute does not). The engine thread's CPU time in the streamed layers is kept next to
    it. Figures: medians over the rounds."""
    runs = []
    rounds = opts.host_rounds
    for i in range(rounds):
        opts.progress(f"host overhead {i + 1}/{rounds}: compute only, then default settings at 25%, unthrottled")
        compute = work.config(
            "streamed", _common(opts) + ["--cache-bytes", str(budget_bytes(probe, 100.0)), "--no-drop"]
        )
        streamed = _host_run(work, opts, probe, files)
        base = _figures(compute).get("decode_tokens_per_s")
        runs.append(streamed | {"compute_tokens_per_s": base, "overhead_ms_per_token": overhead_ms(streamed, base)})
    wall = [r["overhead_ms_per_token"] for r in runs if r["overhead_ms_per_token"] is not None]
    cpu = [r["host_ms_per_token"] for r in runs if r.get("host_ms_per_token") is not None]
    return {
        "runs": runs,
        "host_overhead_ms_per_token": statistics.median(wall) if wall else None,
        "host_cpu_ms_per_token": statistics.median(cpu) if cpu else None,
    }


def overhead_ms(streamed: dict, compute_tokens_per_s: float | None) -> float | None:
    """Decode ms per token beyond compute only and the read waits."""
    tps, tokens = streamed.get("decode_tokens_per_s"), streamed.get("decode_tokens")
    if not (tps and tokens and compute_tokens_per_s):
        return None
    return (1 / tps - 1 / compute_tokens_per_s - streamed.get("decode_io_wait_s", 0.0) / tokens) * 1000


def _common(opts: Options) -> list[str]:
    return [
        "--tokens",
        str(opts.tokens),
        "--passes",
        "1",
        "--reader-threads",
        str(opts.reader_threads),
        "--uncached-reads",
    ]


def _host_run(work: ConfigRunner, opts: Options, probe: dict, files: list[Path]) -> dict:
    """Default settings at 25%, unthrottled, short prompt, cold files: the host-overhead run."""
    pagecache.drop(files)
    args = _common(opts) + ["--cache-bytes", str(budget_bytes(probe, 25.0)), "--prefetch", "auto"]
    return _figures(work.config("streamed", args))


def _run(work: ConfigRunner, opts: Options, probe: dict, files: list[Path], throttle: ReadThrottle) -> dict:
    common = _common(opts)
    prompt = ["--long-prompt"] if opts.long_prompt else []
    opts.progress("compute only: every expert resident, no reads while decoding (unthrottled)")
    compute = work.config("streamed", common + prompt + ["--cache-bytes", str(budget_bytes(probe, 100.0)), "--no-drop"])
    host = host_rounds(work, opts, probe, files)
    configs = []
    runs = [(b, "off", ["--prefetch", "0", "--policy", "lru", "--no-prompt-favourites"]) for b in opts.budgets]
    runs += [(b, "default", ["--prefetch", "auto"]) for b in opts.budgets]
    # each cache mechanism alone, added to "off": keep_hot, then the router-score policy
    runs += [(25.0, "off+favourites", ["--prefetch", "0", "--policy", "lru"])]
    runs += [(25.0, "off+router-score", ["--prefetch", "0", "--policy", "router-score"])]
    runs += [(25.0, v, ["--prefetch-mode", v]) for v in opts.variants]
    runs.sort(key=lambda r: -r[0])
    for budget, name, extra in runs:
        cache_bytes = budget_bytes(probe, budget)
        opts.progress(
            f"throttled {opts.disk_bytes_per_s / 1e6:g} MB/s: budget {budget:g}% ({cache_bytes / MB:.0f} MB), {name}"
        )
        cold = pagecache.drop(files)
        argv, out = work.argv("streamed", common + prompt + ["--cache-bytes", str(cache_bytes), *extra])
        res = throttle.run(argv, opts.timeout_s)
        entry = {
            "budget_percent": budget,
            "name": name,
            "cache_bytes": cache_bytes,
            "wall_s": res.seconds,
            "device_read_bytes": res.device_read_bytes,
            "page_cache_before": cold,
        }
        if res.returncode != 0:
            tail = res.stderr_tail.splitlines()[-1:] or ["(no output)"]
            opts.progress(f"{name} at {budget:g}% failed: {tail[0]}")
            entry["error"] = tail[0]
        else:
            entry |= json.loads(out.read_text())
        configs.append(entry)
    result = {
        "machine": machine(),
        "command": opts.command,
        "model": probe,
        "settings": {
            "disk_bytes_per_s": opts.disk_bytes_per_s,
            "budgets_percent": opts.budgets,
            "tokens": opts.tokens,
            "long_prompt": opts.long_prompt,
            "reader_threads": opts.reader_threads,
            "variants": opts.variants,
        },
        "compute": _figures(compute),
        "host": host,
        "configs": [_derive(c, compute, probe, opts.disk_bytes_per_s) for c in configs],
    }
    result |= headline(result)
    return result


def _figures(run: dict) -> dict:
    """The one pass of a run, with the run's settings next to it."""
    out = {k: v for k, v in run.items() if k not in ("passes", "replay", "replay_decode")}
    return out | (run.get("passes") or [{}])[0]


def _derive(entry: dict, compute: dict, probe: dict, bandwidth: int) -> dict:
    """One throttled run's figures and its limits (seconds per decode token, TTFT)."""
    if "error" in entry:
        return entry
    p = entry["passes"][0]
    out = {k: v for k, v in entry.items() if k not in ("passes", "replay")} | p
    c = compute["passes"][0]
    expert = probe["disk_expert_bytes"]
    dec = entry.get("replay_decode") or {}
    tokens = p.get("decode_tokens") or 0
    if dec and tokens:
        optimal_misses = dec["accesses"] - dec["optimal_hits"]
        lru_misses = dec["accesses"] - dec["lru_hits"]
        out["optimal_misses_per_token"] = optimal_misses / tokens
        out["lru_misses_per_token"] = lru_misses / tokens
        out["live_misses_per_token"] = p["decode_misses"] / tokens
        out["optimal_read_s_per_token"] = optimal_misses * expert / bandwidth / tokens
        out["compute_s_per_token"] = 1 / c["decode_tokens_per_s"] if c.get("decode_tokens_per_s") else None
        out["limit_s_per_token"] = max(out["optimal_read_s_per_token"], out["compute_s_per_token"] or 0)
        out["s_per_token"] = 1 / p["decode_tokens_per_s"] if p.get("decode_tokens_per_s") else None
        out["vs_limit"] = _div(out["s_per_token"], out["limit_s_per_token"])
        out["read_s_per_token"] = p["decode_bytes_read"] / bandwidth / tokens
    distinct = entry.get("prefill_distinct_experts")
    if distinct:
        out["ttft_read_limit_s"] = distinct * expert / bandwidth
        out["ttft_limit_s"] = max(out["ttft_read_limit_s"], c.get("time_to_first_token_s") or 0)
        out["ttft_vs_limit"] = _div(p.get("time_to_first_token_s"), out["ttft_limit_s"])
    if entry.get("device_read_bytes") and p.get("bytes_read"):
        out["device_vs_requested_bytes"] = entry["device_read_bytes"] / p["bytes_read"]
    return out


def find(configs: list[dict], budget: float, name: str) -> dict | None:
    return next((c for c in configs if c["budget_percent"] == budget and c["name"] == name), None)


def headline(result: dict) -> dict:
    """The five figures of the issue's targets (25% budget)."""
    default = find(result["configs"], 25.0, "default") or {}
    off = find(result["configs"], 25.0, "off") or {}
    host = result["host"]
    return {
        "io_bound_limit_s": default.get("limit_s_per_token"),
        "io_bound_vs_limit": default.get("vs_limit"),
        "io_bound_speedup": _div(default.get("decode_tokens_per_s"), off.get("decode_tokens_per_s")),
        "ttft_vs_limit": default.get("ttft_vs_limit"),
        "host_overhead_ms_per_token": host.get("host_overhead_ms_per_token"),
    }


def _div(a, b):
    return a / b if a is not None and b else None
