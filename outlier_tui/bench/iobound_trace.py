"""`outlier bench --io-bound --trace TRACE`: the I/O-bound study on a trained model's routing.

The real engine (slot pool, reader threads, prefetch queue, cache policy, cold reads through
the cgroup read throttle) runs a random checkpoint of the trace's shape whose MoE layers are
routed by the trace (outlier_tui/bench/trace_model.py), from the trace's second half. Per
budget, throttled, each in a fresh process from cold files:

- `off`: LRU, synchronous reads, no prefetch (the design before any of this);
- `default`: the engine's defaults (its cache policy, prefetch decided at load);

next to compute only (every expert resident, unthrottled). Figures of the same run:

- pipeline_efficiency = decode s/token / max(compute-only s/token, the run's own decode misses
  x bytes per expert on disk / bandwidth): what the engine adds beyond its own reads and
  compute (bandwidth: measured through the throttle from cold before the runs, expert-sized
  reads at random offsets from as many threads as the engine's reader; speculative reads
  that were never used count against the engine);
- misses_vs_lru, misses_vs_belady: the default's decode misses against LRU's and Belady's
  replayed on that run's own routing (the same calls);
- io_bound_speedup: default decode tok/s / off's, same budget.
"""

from __future__ import annotations

import json
import re
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from outlier_tui.bench import pagecache
from outlier_tui.bench.iobound import _div, _figures
from outlier_tui.bench.orchestrate import ConfigRunner, budget_bytes, machine
from outlier_tui.bench.replay import load_routing
from outlier_tui.bench.throttle import ReadThrottle, run_throttled

MB = 1024 * 1024


@dataclass
class Options:
    trace: Path
    disk_bytes_per_s: int = 25_000_000
    budgets: list[float] = field(default_factory=lambda: [25.0, 10.0])
    tokens: int = 32
    reader_threads: int = 4
    # 4-bit experts of 442 KB: at 25 MB/s a token's misses are a continuous read of ~1.6 s,
    # next to ~0.15 s of compute (cgroup v1's throttle lets short bursts through above its
    # cap: small reads with compute gaps between them measured faster than the cap)
    hidden: int = 512
    expert_hidden: int = 512
    timeout_s: float = 3600.0
    command: str = ""
    progress: Callable[[str], None] = lambda message: None


def run(opts: Options) -> dict:
    """Every figure of one run, or {"skipped": why} where reads cannot be throttled."""
    from outlier_tui.bench import trace_model

    routing = load_routing(opts.trace)
    with tempfile.TemporaryDirectory(prefix="outlier-iobound-trace-") as tmp:
        model_dir = Path(tmp) / "model"
        opts.progress(
            f"building a random {routing.layers} x {routing.num_experts} top-{routing.experts.shape[2]} "
            "checkpoint of the trace's shape"
        )
        trace_model.write_checkpoint(model_dir, routing, opts.hidden, opts.expert_hidden)
        work = ConfigRunner(Path(tmp), model_dir, opts.timeout_s, opts.progress)
        probe = work.config("probe", [])
        files = [Path(f) for f in probe["files"]]
        return run_throttled(
            files, opts.disk_bytes_per_s, opts.command, lambda throttle: _run(work, opts, probe, files, throttle)
        )


def _common(opts: Options) -> list[str]:
    return [
        "--tokens",
        str(opts.tokens),
        "--passes",
        "1",
        "--reader-threads",
        str(opts.reader_threads),
        "--uncached-reads",
        "--trace",
        str(opts.trace),
    ]


# the engine's pattern: reader threads each reading whole experts at random places
_READ = (
    "import os, random, sys, threading, time\n"
    "path, n, size, threads = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])\n"
    "fd, end = os.open(path, os.O_RDONLY), os.path.getsize(path) - size\n"
    "os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_RANDOM)\n"
    "offsets = random.Random(0).sample(range(0, end, size), min(n // size, end // size))\n"
    "def work(part):\n"
    "    for off in part:\n"
    "        os.pread(fd, size, off)\n"
    "start = time.perf_counter()\n"
    "pool = [threading.Thread(target=work, args=(offsets[i::threads],)) for i in range(threads)]\n"
    "[t.start() for t in pool]\n"
    "[t.join() for t in pool]\n"
    "print(f'read {len(offsets) * size} {time.perf_counter() - start}', file=sys.stderr)\n"
)


def bandwidth(
    throttle: ReadThrottle, files: list[Path], seconds: float, cap: int, expert_bytes: int, threads: int
) -> float | None:
    """Bytes/s of cold reads through the throttle as the engine makes them: `threads` threads
    reading expert-sized pieces of the largest file at random offsets, about `seconds` long."""
    pagecache.drop(files)
    big = max(files, key=lambda f: f.stat().st_size)
    argv = [sys.executable, "-c", _READ, str(big), str(int(cap * seconds)), str(expert_bytes), str(threads)]
    res = throttle.run(argv, 120.0)
    found = re.search(r"read (\d+) ([0-9.e-]+)", res.stderr_tail)
    if res.returncode != 0 or not found or float(found.group(2)) <= 0:
        return None
    return int(found.group(1)) / float(found.group(2))


def _run(work: ConfigRunner, opts: Options, probe: dict, files: list[Path], throttle: ReadThrottle) -> dict:
    common = _common(opts)
    opts.progress("measuring the throttled read bandwidth")
    measured = bandwidth(throttle, files, 8.0, opts.disk_bytes_per_s, probe["disk_expert_bytes"], opts.reader_threads)
    rate = measured or opts.disk_bytes_per_s
    opts.progress("compute only: every expert resident, no reads while decoding (unthrottled)")
    compute = _figures(
        work.config("streamed", common + ["--cache-bytes", str(budget_bytes(probe, 100.0)), "--no-drop"])
    )
    runs = [(b, "off", ["--prefetch", "0", "--policy", "lru", "--no-prompt-favourites"]) for b in opts.budgets]
    runs += [(b, "default", ["--prefetch", "auto"]) for b in opts.budgets]
    configs = []
    for budget, name, extra in runs:
        cache_bytes = budget_bytes(probe, budget)
        opts.progress(
            f"throttled {opts.disk_bytes_per_s / 1e6:g} MB/s: budget {budget:g}% ({cache_bytes / MB:.0f} MB), {name}"
        )
        pagecache.drop(files)
        argv, out = work.argv("streamed", common + ["--cache-bytes", str(cache_bytes), *extra])
        res = throttle.run(argv, opts.timeout_s)
        entry = {
            "budget_percent": budget,
            "name": name,
            "cache_bytes": cache_bytes,
            "wall_s": res.seconds,
            "device_read_bytes": res.device_read_bytes,
        }
        if res.returncode != 0:
            tail = res.stderr_tail.splitlines()[-1:] or ["(no output)"]
            opts.progress(f"{name} at {budget:g}% failed: {tail[0]}")
            entry["error"] = tail[0]
        else:
            entry |= json.loads(out.read_text())
        configs.append(derive(entry, compute, rate, probe["disk_expert_bytes"]))
    result = {
        "machine": machine(),
        "command": opts.command,
        "trace": str(opts.trace),
        "model": probe,
        "settings": {
            "disk_bytes_per_s": opts.disk_bytes_per_s,
            "measured_bytes_per_s": measured,
            "budgets_percent": opts.budgets,
            "tokens": opts.tokens,
            "reader_threads": opts.reader_threads,
            "hidden_size": opts.hidden,
            "moe_intermediate_size": opts.expert_hidden,
        },
        "compute": compute,
        "configs": configs,
    }
    result["budgets"] = headline(configs)
    return result


def derive(entry: dict, compute: dict, bandwidth: float, expert_bytes: int) -> dict:
    """One throttled run's figures, and its limit: max(compute only, its own misses' reads)."""
    if "error" in entry:
        return entry
    p = entry["passes"][0]
    out = {k: v for k, v in entry.items() if k not in ("passes", "replay")} | p
    tokens = p.get("decode_tokens") or 0
    dec = entry.get("replay_decode") or {}
    compute_tps = compute.get("decode_tokens_per_s")
    if not (tokens and p.get("decode_tokens_per_s") and compute_tps):
        return out
    out["s_per_token"] = 1 / p["decode_tokens_per_s"]
    out["compute_s_per_token"] = 1 / compute_tps
    if entry.get("device_read_bytes") and p.get("bytes_read"):
        out["device_vs_requested_bytes"] = entry["device_read_bytes"] / p["bytes_read"]
    out["live_misses_per_token"] = p["decode_misses"] / tokens
    out["read_s_per_token"] = out["live_misses_per_token"] * expert_bytes / bandwidth
    out["read_share"] = out["read_s_per_token"] / out["s_per_token"]
    out["pipeline_efficiency"] = out["s_per_token"] / max(out["compute_s_per_token"], out["read_s_per_token"])
    if dec:
        out["lru_misses_per_token"] = (dec["accesses"] - dec["lru_hits"]) / tokens
        out["belady_misses_per_token"] = (dec["accesses"] - dec["optimal_hits"]) / tokens
        out["misses_vs_lru"] = _div(out["live_misses_per_token"], out["lru_misses_per_token"])
        out["misses_vs_belady"] = _div(out["live_misses_per_token"], out["belady_misses_per_token"])
    return out


def headline(configs: list[dict]) -> list[dict]:
    """Per budget: the issue's four figures of the default, and the off run's efficiency."""
    out = []
    for budget in sorted({c["budget_percent"] for c in configs}, reverse=True):
        default = next((c for c in configs if c["budget_percent"] == budget and c["name"] == "default"), {})
        off = next((c for c in configs if c["budget_percent"] == budget and c["name"] == "off"), {})
        out.append(
            {
                "percent": budget,
                "pipeline_efficiency": default.get("pipeline_efficiency"),
                "misses_vs_lru": default.get("misses_vs_lru"),
                "misses_vs_belady": default.get("misses_vs_belady"),
                "io_bound_speedup": _div(default.get("decode_tokens_per_s"), off.get("decode_tokens_per_s")),
                "read_share": default.get("read_share"),
                "off_pipeline_efficiency": off.get("pipeline_efficiency"),
            }
        )
    return out


def markdown(result: dict) -> str:
    if "skipped" in result:
        return f"I/O-bound run on {result.get('trace', 'the trace')} skipped: {result['skipped']}\n"
    s = result["settings"]
    lines = [
        f"## I/O-bound on real routing: {result['trace']}",
        "",
        f"Random {result['model']['moe_layers']} x {result['model']['num_experts']} checkpoint "
        f"(top-{result['model']['top_k']}, {result['model']['disk_expert_bytes'] / 1024:.0f} KiB per expert on disk), "
        f"routing from the trace, {s['tokens']} decode tokens, reads capped at {s['disk_bytes_per_s'] / 1e6:g} MB/s "
        f"(measured {_f((s['measured_bytes_per_s'] or 0) / 1e6, 1)} MB/s). "
        f"Compute only: {_f(result['compute'].get('decode_tokens_per_s'), 2)} tok/s.",
        "",
        "| budget | run | tok/s | misses/token (live / LRU / Belady) | read share | pipeline_efficiency |",
        "|---:|---|---:|---:|---:|---:|",
    ]
    for c in result["configs"]:
        if "error" in c:
            lines.append(f"| {c['budget_percent']:g}% | {c['name']} | failed: {c['error']} | | | |")
            continue
        lines.append(
            f"| {c['budget_percent']:g}% | {c['name']} | {_f(c.get('decode_tokens_per_s'), 2)} | "
            f"{_f(c.get('live_misses_per_token'), 1)} / {_f(c.get('lru_misses_per_token'), 1)} / "
            f"{_f(c.get('belady_misses_per_token'), 1)} | {_f(c.get('read_share'), 2)} | "
            f"{_f(c.get('pipeline_efficiency'), 3)} |"
        )
    lines += ["", "| budget | pipeline_efficiency | misses_vs_lru | misses_vs_belady | io_bound_speedup |"]
    lines.append("|---:|---:|---:|---:|---:|")
    for b in result["budgets"]:
        lines.append(
            f"| {b['percent']:g}% | {_f(b['pipeline_efficiency'], 3)} | {_f(b['misses_vs_lru'], 3)} | "
            f"{_f(b['misses_vs_belady'], 3)} | {_f(b['io_bound_speedup'], 3)} |"
        )
    return "\n".join(lines) + "\n"


def _f(value: float | None, digits: int) -> str:
    return "-" if value is None else f"{value:.{digits}f}"
