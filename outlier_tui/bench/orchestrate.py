"""Run every configuration of `outlier bench` side by side, each in its own
process, and gather the figures and the five ratios into one dict.

Order of one run: probe the model; then, for each round, the resident
baseline and every (budget, prefetch) configuration, each started with the
model's files evicted from the page cache; then the raw disk baselines
(cold); then the memory-cap runs. Ratios are computed per round from that
round's figures and reported as medians over rounds.
"""

from __future__ import annotations

import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from outlier_tui.bench import pagecache

Figures = dict[str, Any]  # a JSON object of measured figures, as run_config writes it

RATIO_KEYS = ("resident_ratio", "read_bw_ratio", "lru_vs_optimal", "io_wait_fraction_25", "speed_at_25")
MB = 1024 * 1024


@dataclass
class Options:
    """One benchmark run's settings; the defaults are `outlier bench`'s and outlier_tui.bench.served's."""

    model_dir: Path
    budgets: list[float] = field(default_factory=lambda: [100.0, 50.0, 25.0, 10.0])
    tokens: int = 48
    passes: int = 2  # pass 1 cold, the rest warm
    resident_passes: int | None = None  # None: same as passes (resident has no cache to warm)
    memcap_tokens: int = 16
    rounds: int = 3
    prefetch_budgets: list[float] | None = None  # None: prefetch on at every budget
    reader_threads: int = 4
    compute_dtype: str = "auto"  # --compute-dtype of every run, streamed and resident alike
    raw_read_bytes: int | None = 1024 * MB  # None: every expert
    memcap_bytes: int | None = 1024 * MB  # None: skip the memory-cap runs
    timeout_s: float = 1800.0
    command: str = ""
    progress: Callable[[str], None] = lambda message: None


def run(opts: Options) -> Figures:
    """Every figure of one benchmark run; the five ratios are top-level keys."""
    budgets = sorted(set(opts.budgets) | {100.0, 25.0}, reverse=True)
    with tempfile.TemporaryDirectory(prefix="outlier-bench-") as tmp:
        work = ConfigRunner(
            Path(tmp), opts.model_dir, opts.timeout_s, opts.progress, ["--compute-dtype", opts.compute_dtype]
        )
        probe = work.config("probe", [])
        files = [Path(f) for f in probe["files"]]
        rounds = []
        for r in range(opts.rounds):
            rounds.append(_round(work, opts, probe, files, budgets, r))
        disk = _disk(opts, probe, files, rounds)
        memcap = (
            _memcap(work, opts, opts.memcap_bytes, probe, files, budgets)
            if opts.memcap_bytes
            else {"skipped": "disabled"}
        )
    result: Figures = {
        "machine": machine(),
        "command": opts.command,
        "model": probe,
        "settings": {
            "budgets_percent": budgets,
            "tokens": opts.tokens,
            "passes": opts.passes,
            "resident_passes": opts.resident_passes or opts.passes,
            "memcap_tokens": opts.memcap_tokens,
            "rounds": opts.rounds,
            "reader_threads": opts.reader_threads,
            "compute_dtype": opts.compute_dtype,
            "prefetch_budgets_percent": opts.prefetch_budgets or budgets,
        },
        "resident": _combine([r["resident"] for r in rounds]),
        "configs": [_combine([r["configs"][i] for r in rounds]) for i in range(len(rounds[0]["configs"]))],
        "disk": disk,
        "memcap": memcap,
    }
    per_round = [_ratios(r, disk) for r in rounds]
    result["ratios_per_round"] = per_round
    for key in RATIO_KEYS:
        values = [p[key] for p in per_round if p[key] is not None]
        result[key] = statistics.median(values) if values else None
    result["engine_read_bandwidth_bytes_per_s"] = _engine_bandwidth(result["configs"])
    return result


class ConfigRunner:
    """Runs outlier_tui.bench.run_config in fresh processes and reads back their JSON."""

    def __init__(
        self,
        tmp: Path,
        model_dir: Path,
        timeout_s: float,
        progress: Callable[[str], None],
        common: list[str] | None = None,
    ) -> None:
        self.tmp, self.model_dir, self.timeout_s, self.progress = tmp, model_dir, timeout_s, progress
        self.common = common or []  # flags every run gets (--compute-dtype)
        self.count = 0

    def argv(self, mode: str, extra: list[str]) -> tuple[list[str], Path]:
        self.count += 1
        out = self.tmp / f"{self.count:03d}-{mode}.json"
        return [
            sys.executable,
            "-m",
            "outlier_tui.bench.run_config",
            mode,
            "--model",
            str(self.model_dir),
            "--json",
            str(out),
            *self.common,
            *extra,
        ], out

    def config(self, mode: str, extra: list[str], required: bool = True) -> Figures:
        """The run's figures; a failed optional run gives {"error": its last stderr line}."""
        argv, out = self.argv(mode, extra)
        start = time.perf_counter()
        done = subprocess.run(
            argv,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
            timeout=self.timeout_s,
        )
        if done.returncode != 0:
            tail = (done.stderr or "").strip().splitlines()[-1:] or ["(no output)"]
            message = f"{mode} run failed (exit {done.returncode}): {tail[0]}"
            if required:
                raise RuntimeError(message)
            self.progress(message)
            return {"error": tail[0], "returncode": done.returncode}
        return json.loads(out.read_text()) | {"wall_s": time.perf_counter() - start}


def _round(
    work: ConfigRunner, opts: Options, probe: Figures, files: list[Path], budgets: list[float], index: int
) -> Figures:
    common = ["--tokens", str(opts.tokens), "--passes", str(opts.passes)]
    opts.progress(f"round {index + 1}: resident baseline (mlx-lm, every weight in memory)")
    pagecache.drop(files)
    resident = work.config(
        "resident", ["--tokens", str(opts.tokens), "--passes", str(opts.resident_passes or opts.passes)]
    )
    configs = []
    prefetch_at = set(opts.prefetch_budgets if opts.prefetch_budgets is not None else budgets)
    for budget in budgets:
        for prefetch in (0, 1):
            if prefetch and budget not in prefetch_at:
                continue
            cache_bytes = budget_bytes(probe, budget)
            opts.progress(
                f"round {index + 1}: streamed, budget {budget:g}% "
                f"({cache_bytes / MB:.0f} MB), prefetch {'on' if prefetch else 'off'}"
            )
            pagecache.drop(files)
            fig = work.config(
                "streamed",
                common
                + [
                    "--cache-bytes",
                    str(cache_bytes),
                    "--prefetch",
                    str(prefetch),
                    "--reader-threads",
                    str(opts.reader_threads),
                ],
                required=False,
            )
            fig.update(budget_percent=budget, prefetch=bool(prefetch), cache_bytes=cache_bytes)
            configs.append(fig)
    return {"resident": resident, "configs": configs}


def budget_bytes(probe: dict, percent: float) -> int:
    """percent of all expert bytes, but never below one layer's top-k experts."""
    wanted = int(probe["total_expert_bytes"] * percent / 100)
    return max(wanted, probe["top_k"] * probe["expert_bytes"])


def _headline(run: dict | None) -> dict:
    """The figures of a run: medians over its warm passes (pass 1 when it is the only one)."""
    passes = (run or {}).get("passes")
    if not passes:
        return {}
    warm = passes[1:] or passes
    out = {}
    for key in warm[0]:
        values = [p.get(key) for p in warm]
        if all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values):
            out[key] = statistics.median(values)
    return out


def _combine(runs: list[dict]) -> dict:
    """One configuration over rounds: headline = median over rounds of each round's headline."""
    ok = [r for r in runs if "error" not in r]
    if not ok:
        return dict(runs[0], headline={}, cold={}, rounds=[])
    heads = [_headline(r) for r in ok]
    headline = {k: statistics.median([h[k] for h in heads if k in h]) for k in heads[0]}
    first = ok[0]
    out = {k: v for k, v in first.items() if k not in ("passes", "replay")}
    out["replay"] = _without_batches(first.get("replay"))
    out["headline"] = headline
    out["cold"] = _headline({"passes": first["passes"][:1]})
    out["peak_rss_bytes"] = max(r["peak_rss_bytes"] for r in ok)
    out["failed_rounds"] = [r["error"] for r in runs if "error" in r]
    out["rounds"] = [
        {"passes": r["passes"], "replay": _without_batches(r.get("replay")), "tokens": r["tokens"]} for r in ok
    ]
    return out


def _without_batches(replay: dict | None) -> dict | None:
    return None if replay is None else {k: v for k, v in replay.items() if k != "lru_miss_batches"}


def find(configs: list[dict], budget: float, prefetch: bool) -> dict | None:
    return next((c for c in configs if c["budget_percent"] == budget and c["prefetch"] == prefetch), None)


def _ratios(round_: dict, disk: dict) -> dict:
    resident = _headline(round_["resident"])
    full, quarter = (find(round_["configs"], b, False) for b in (100.0, 25.0))
    h100, h25 = _headline(full), _headline(quarter)
    replay = (quarter or {}).get("replay") or {}
    live = (quarter or {}).get("passes") or [{}]
    raw = disk.get("raw", {}).get("bandwidth_bytes_per_s")
    engine_bw = h25.get("read_bandwidth_bytes_per_s")
    return {
        "resident_ratio": _div(h100.get("decode_tokens_per_s"), resident.get("decode_tokens_per_s")),
        "speed_at_25": _div(h25.get("decode_tokens_per_s"), h100.get("decode_tokens_per_s")),
        "io_wait_fraction_25": h25.get("io_wait_fraction"),
        # the replay counts the last pass only: compare with that pass's live hit rate
        "lru_vs_optimal": _div(live[-1].get("hit_rate"), replay.get("optimal_hit_rate")),
        "read_bw_ratio": _div(engine_bw, raw),
    }


def _engine_bandwidth(configs: list[dict]) -> float | None:
    quarter = find(configs, 25.0, False)
    return quarter["headline"].get("read_bandwidth_bytes_per_s") if quarter else None


def _div(a, b) -> float | None:
    return a / b if a is not None and b else None


def _disk(opts: Options, probe: dict, files: list[Path], rounds: list[dict]) -> dict:
    from engine.checkpoint import CheckpointIndex
    from outlier_tui.bench import disk

    index = CheckpointIndex.open(opts.model_dir)
    quarter = find(rounds[-1]["configs"], 25.0, False) or {}
    batches = (quarter.get("replay") or {}).get("lru_miss_batches") or []
    out: Figures = {"read_sizes": _read_sizes(index)}
    opts.progress("disk baseline: raw cold reads, shuffled experts of the whole model")
    keys = disk.sample_experts(index, opts.raw_read_bytes)
    cold = pagecache.drop(files)
    out["random"] = disk.read_stream(index, keys, opts.reader_threads) | {"page_cache_before": cold}
    if batches:
        # raw = the very experts the engine missed at 25%, in its order, reads always in flight
        opts.progress("disk baseline: raw cold reads of the engine's own misses")
        # (repeats included: an expert evicted and read again comes from the page cache for
        # both, as it did for the engine)
        keys = [(row, expert) for batch in batches for row, expert in batch]
        cold = pagecache.drop(files)
        out["raw"] = disk.read_stream(index, keys, opts.reader_threads) | {
            "page_cache_before": cold,
            "source": "engine misses",
            "repeat_fraction": 1 - len(set(keys)) / len(keys),
        }
    else:
        out["raw"] = out["random"] | {"source": "shuffled experts"}
    if batches:
        opts.progress("disk baseline: the engine's own miss batches, cold")
        cold = pagecache.drop(files)
        out["batched"] = disk.read_batches(index, batches, opts.reader_threads) | {"page_cache_before": cold}
    return out


def _read_sizes(index) -> list[int]:
    first = index.moe_layers[sorted(index.moe_layers)[0]]
    return [t.expert_nbytes for t in first.tensors.values()]


def _memcap(
    work: ConfigRunner, opts: Options, limit: int, probe: Figures, files: list[Path], budgets: list[float]
) -> Figures:
    from outlier_tui.bench.memcap import MemoryCap

    budget = min(budgets)
    out: Figures = {"limit_bytes": limit, "budget_percent": budget, "model_file_bytes": probe["file_bytes"]}
    for mode, extra in (("streamed", ["--cache-bytes", str(budget_bytes(probe, budget))]), ("resident", [])):
        cap, why = MemoryCap.create(limit)
        if cap is None:
            return out | {"skipped": why}
        opts.progress(f"memory cap {limit / MB:.0f} MB: {mode}")
        argv, json_out = work.argv(mode, ["--tokens", str(opts.memcap_tokens), "--passes", "1", *extra])
        pagecache.drop(files)
        try:
            res = cap.run(argv, opts.timeout_s)
        finally:
            cap.remove()
        entry: Figures = {
            "returncode": res.returncode,
            "completed": res.returncode == 0,
            "seconds": res.seconds,
            "cgroup_peak_bytes": res.group_peak_bytes,
            "oom_kills": res.oom_kills,
        }
        if res.returncode == 0:
            fig = json.loads(json_out.read_text())
            entry["peak_rss_bytes"] = fig["peak_rss_bytes"]
            entry["rss_under_limit"] = fig["peak_rss_bytes"] < limit
            entry["decode_tokens_per_s"] = fig["passes"][0]["decode_tokens_per_s"]
        else:
            entry["error"] = res.stderr_tail.splitlines()[-1] if res.stderr_tail else ""
        out[mode] = entry
    return out


def machine() -> dict:
    import psutil

    cpu = platform.processor() or ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    from importlib.metadata import version

    import mlx.core as mx

    return {
        "platform": platform.platform(),
        "cpu": cpu,
        "cores": os.cpu_count(),
        "memory_bytes": psutil.virtual_memory().total,
        "python": platform.python_version(),
        "mlx": version("mlx"),
        "mlx_lm": version("mlx-lm"),
        "mlx_device": str(mx.default_device()),
        "load_average": list(os.getloadavg()),
        "time": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
    }
