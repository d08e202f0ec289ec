"""What `outlier bench --io-bound` prints and writes: the Markdown tables and
the JSON (the five target figures as top-level keys); its figure is
outlier_tui.bench.plot.write_iobound_plot."""

from __future__ import annotations

from pathlib import Path

from outlier_tui.bench import report
from outlier_tui.bench.report import _f

MB = 1024 * 1024

# key -> (comparison, threshold, what it says)
TARGETS = {
    "io_bound_vs_limit": ("<=", 1.5, "decode s/token, default settings, 25% budget / limit"),
    "io_bound_speedup": (">=", 1.5, "decode tok/s, default settings / synchronous reads, no prefetch, 25%"),
    "ttft_vs_limit": ("<=", 1.5, "time to first token / max(compute-only prefill, distinct experts read once)"),
    "host_overhead_ms_per_token": (
        "<=",
        3.0,
        "decode ms/token beyond compute only and read waits, 25% unthrottled (median of rounds)",
    ),
}


def verdicts(result: dict) -> dict:
    return report.verdicts(result, TARGETS)


def write_json(result: dict, path: str | Path) -> None:
    report.write_json(result, path, TARGETS)


def write_host_json(result: dict, path: str | Path) -> None:
    key = "host_overhead_ms_per_token"
    report.write_json(result, path, {key: TARGETS[key]})


def host_markdown(result: dict) -> str:
    """The host-overhead rounds alone (outlier bench --host-overhead)."""
    model, s = result["model"], result["settings"]
    target = TARGETS["host_overhead_ms_per_token"]
    lines = [
        f"Host overhead: {model['model_type']}, {model['moe_layers']} MoE layers, unthrottled, short prompt, "
        f"{s['tokens']} tokens. Each round runs compute only (every expert resident), then the default "
        "settings at 25% budget from cold files, in fresh processes.",
        "",
        host_table(result),
        "",
        f"host_overhead_ms_per_token (median): {_f(result['host_overhead_ms_per_token'])} "
        f"(target {target[0]} {target[1]:g}); engine-thread CPU in the streamed layers (median): "
        f"{_f(result.get('host_cpu_ms_per_token'))} ms/token",
        "",
    ]
    return "\n".join(lines)


def host_table(host: dict) -> str:
    """One row per round: the wall-time overhead and what it is computed from."""
    lines = [
        "| round | overhead ms/token | decode tok/s | compute-only tok/s | read wait ms/token "
        "| engine CPU ms/token | decode hit rate |",
        "|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for i, run in enumerate(host.get("runs", []), 1):
        tokens = run.get("decode_tokens") or 0
        wait = run.get("decode_io_wait_s", 0.0) * 1000 / tokens if tokens else None
        lines.append(
            f"| {i} | {_f(run.get('overhead_ms_per_token'))} | {_f(run.get('decode_tokens_per_s'))} | "
            f"{_f(run.get('compute_tokens_per_s'))} | {_f(wait)} | {_f(run.get('host_ms_per_token'))} | "
            f"{_f(run.get('decode_hit_rate'))} |"
        )
    return "\n".join(lines)


def markdown(result: dict) -> str:
    if "skipped" in result:
        return f"I/O-bound benchmark skipped: {result['skipped']}\n"
    model, s = result["model"], result["settings"]
    compute, host = result["compute"], result["host"]
    head = (
        f"Model: {model['model_type']}, {model['moe_layers']} MoE layers x {model['num_experts']} experts "
        f"(top-{model['top_k']}), {model['disk_expert_bytes'] / MB:.2f} MB per expert on disk. Reads capped "
        f"at {s['disk_bytes_per_s'] / 1e6:g} MB/s (cgroup), files cold at the start of every run; one request "
        f"({'~500-token' if s['long_prompt'] else 'short'} prompt, {s['tokens']} tokens). Compute only "
        f"(every expert resident): {_f(compute.get('decode_tokens_per_s'))} tok/s, prefill "
        f"{_f(compute.get('time_to_first_token_s'), 1)} s."
    )
    rows = [
        "| budget | config | decode tok/s | s/token | limit s/token | vs limit | decode hit rate "
        "| misses/token (live / LRU / optimal) | MB read/token | io-wait share | prefetch used/issued "
        "(cancelled) | TTFT s | TTFT limit s | TTFT vs limit | same tokens |",
        "|---:|---|---:|---:|---:|---:|---:|---|---:|---:|---|---:|---:|---:|:---:|",
    ]
    for c in result["configs"]:
        if "error" in c:
            rows.append(f"| {c['budget_percent']:g}% | {c['name']} | failed: {c['error']} |" + " |" * 12)
            continue
        pf = (
            f"{c['prefetch_used']}/{c['prefetch_issued']} ({c.get('prefetch_cancelled', 0)})"
            if c.get("prefetch_issued")
            else "-"
        )
        same = "yes" if c.get("tokens") == compute.get("tokens") else "no"
        rows.append(
            f"| {c['budget_percent']:g}% | {c['name']} | {_f(c.get('decode_tokens_per_s'))} | "
            f"{_f(c.get('s_per_token'), 3)} | {_f(c.get('limit_s_per_token'), 3)} | {_f(c.get('vs_limit'))} | "
            f"{_f(c.get('decode_hit_rate'), 3)} | {_f(c.get('live_misses_per_token'), 1)} / "
            f"{_f(c.get('lru_misses_per_token'), 1)} / {_f(c.get('optimal_misses_per_token'), 1)} | "
            f"{_f((c.get('bytes_read_per_token') or 0) / MB, 1)} | {_f(c.get('io_wait_fraction'))} | {pf} | "
            f"{_f(c.get('time_to_first_token_s'), 1)} | {_f(c.get('ttft_limit_s'), 1)} | "
            f"{_f(c.get('ttft_vs_limit'))} | {same} |"
        )
    met = verdicts(result)
    targets = [
        "| figure | value | target | met | what it measures |",
        "|---|---:|---:|:---:|---|",
        f"| io_bound_limit_s | {_f(result.get('io_bound_limit_s'), 3)} | - | - | best any engine could do "
        "per decode token at 25%: max(compute only, optimal misses x bytes / bandwidth) |",
    ]
    for key, (op, threshold, what) in TARGETS.items():
        mark = {True: "yes", False: "**no**", None: "not measured"}[met[key]]
        targets.append(f"| {key} | {_f(result.get(key), 3)} | {op} {threshold} | {mark} | {what} |")
    notes = []
    default = next((c for c in result["configs"] if c.get("name") == "default" and c.get("prefetch_decision")), None)
    if default:
        d = default["prefetch_decision"]
        notes.append(
            f"- Prefetch decided at load (throttled): one expert read {d['read_s_per_expert'] * 1e3:.1f} ms "
            f"vs predictor {d['predict_s_per_layer'] * 1e3:.2f} ms -> {'on' if d['enabled'] else 'off'}."
        )
    hd = host["runs"][0].get("prefetch_decision") if host.get("runs") else None
    if hd:
        notes.append(
            f"- Unthrottled (host-overhead rounds): one expert read {hd['read_s_per_expert'] * 1e3:.2f} ms vs "
            f"predictor {hd['predict_s_per_layer'] * 1e3:.2f} ms -> {'on' if hd['enabled'] else 'off'}."
        )
    ratios = [c["device_vs_requested_bytes"] for c in result["configs"] if c.get("device_vs_requested_bytes")]
    if ratios:
        notes.append(
            f"- Bytes the disk delivered / bytes the engine asked for (readahead waste): "
            f"{min(ratios):.2f}-{max(ratios):.2f}."
        )
    hosts = "Host overhead, unthrottled (compute only, then default at 25%, per round):\n\n" + host_table(host)
    return "\n\n".join([head, "\n".join(rows), "\n".join(targets), hosts, "\n".join(notes)]) + "\n"
