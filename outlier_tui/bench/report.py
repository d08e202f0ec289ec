"""What a benchmark run prints and writes: the Markdown tables, the JSON file
(every figure, the five ratios as top-level keys) and the target verdicts."""

from __future__ import annotations

import json
import math
from pathlib import Path

MB = 1024 * 1024

# key -> (comparison, threshold, what it says)
TARGETS = {
    "resident_ratio": (">=", 0.95, "streamed tok/s at 100% budget / mlx-lm resident tok/s"),
    "lru_vs_optimal": (">=", 0.9, "engine hit rate / offline-optimal (Belady) hit rate, 25% budget"),
    "read_bw_ratio": (">=", 0.8, "engine read bandwidth on cold misses / raw disk, same reads"),
    "io_wait_fraction_25": ("<=", 0.5, "share of decode time waiting on reads, 25% budget"),
    "speed_at_25": (">=", 0.7, "decode tok/s at 25% budget / at 100%"),
}


def verdicts(result: dict, targets: dict = TARGETS) -> dict:
    """{key: True | False | None (not measured)} for every target."""
    out = {}
    for key, (op, threshold, _) in targets.items():
        value = result.get(key)
        out[key] = None if value is None else (value >= threshold if op == ">=" else value <= threshold)
    return out


def write_json(result: dict, path: str | Path, targets: dict = TARGETS) -> None:
    """The result with each target's verdict; NaN/inf become null."""
    clean = _finite(
        dict(
            result,
            targets={
                k: {"target": f"{targets[k][0]} {targets[k][1]}", "met": v}
                for k, v in verdicts(result, targets).items()
            },
        )
    )
    Path(path).write_text(json.dumps(clean, indent=1) + "\n")


def _finite(value):
    """JSON has no NaN/inf: such figures become null."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    return value


def markdown(result: dict) -> str:
    """The tables printed on stdout (and pasted into outlier_tui/bench/RESULTS.md)."""
    return "\n\n".join([_config_table(result), _ratio_table(result), _baseline_lines(result)]) + "\n"


def _config_table(result: dict) -> str:
    model = result["model"]
    resident = result["resident"]
    rows = [
        "| config | cache MB | slots | decode tok/s | cold-pass tok/s | TTFT s | peak RSS MB | hit rate "
        "| decode hit rate | MB read/token | io-wait share | prefetch accuracy | same tokens as resident |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|:---:|",
    ]
    h, c = resident["headline"], resident["cold"]
    rows.append(
        f"| mlx-lm resident | - | - | {_f(h.get('decode_tokens_per_s'))} | "
        f"{_f(c.get('decode_tokens_per_s'))} | {_f(h.get('time_to_first_token_s'), 2)} | "
        f"{_mb(resident['peak_rss_bytes'])} | - | - | - | - | - | - |"
    )
    for cfg in result["configs"]:
        h, c = cfg["headline"], cfg["cold"]
        name = f"{cfg['budget_percent']:g}%, prefetch {'on' if cfg['prefetch'] else 'off'}"
        if not h:
            rows.append(
                f"| {name} | {_mb(cfg['cache_bytes'])} | - | failed: {cfg.get('error', '?')} "
                f"|  |  |  |  |  |  |  |  |  |"
            )
            continue
        acc = h.get("prefetch_accuracy")
        same = "yes" if cfg.get("tokens") == resident.get("tokens") else "no"
        rows.append(
            f"| {name} | {_mb(cfg['cache_bytes'])} | {cfg['cache_slots']} | "
            f"{_f(h.get('decode_tokens_per_s'))} | {_f(c.get('decode_tokens_per_s'))} | "
            f"{_f(h.get('time_to_first_token_s'), 2)} | {_mb(cfg['peak_rss_bytes'])} | "
            f"{_f(h.get('hit_rate'), 3)} | {_f(h.get('decode_hit_rate'), 3)} | "
            f"{_f(_div(h.get('bytes_read_per_token'), MB), 2)} | "
            f"{_f(h.get('io_wait_fraction'), 2)} | {_f(acc, 2) if acc is not None else '-'} | {same} |"
        )
    head = (
        f"Model: {model['model_type']}, {model['moe_layers']} MoE layers x {model['num_experts']} "
        f"experts (top-{model['top_k']}), one expert {model['expert_bytes'] / MB:.2f} MB in memory, "
        f"all experts {model['total_expert_bytes'] / MB:.0f} MB, backbone {model['resident_bytes'] / MB:.0f} MB. "
        f"Figures are medians over the warm passes (each starts with the expert cache the previous "
        f"pass left and the model files evicted from the page cache); the cold pass starts with an "
        f"empty expert cache. Hit rate covers the whole request (prefill + decode)."
    )
    return head + "\n\n" + "\n".join(rows)


def _ratio_table(result: dict) -> str:
    met = verdicts(result)
    rows = ["| ratio | value | target | met | what it measures |", "|---|---:|---:|:---:|---|"]
    for key, (op, threshold, what) in TARGETS.items():
        mark = {True: "yes", False: "**no**", None: "not measured"}[met[key]]
        rows.append(f"| {key} | {_f(result.get(key), 3)} | {op} {threshold} | {mark} | {what} |")
    return "\n".join(rows)


def _baseline_lines(result: dict) -> str:
    lines = []
    disk = result.get("disk", {})
    raw = disk.get("raw")
    sizes = ", ".join(str(s) for s in disk.get("read_sizes", []))
    if raw:
        lines.append(
            f"- Raw disk, cold, {raw['threads']} preads always in flight over the "
            f"{raw.get('source', 'expert ranges')} (per-tensor reads of {sizes} bytes): "
            f"{_gbs(raw['bandwidth_bytes_per_s'])} over {raw['bytes'] / MB:.0f} MB "
            f"(page-cache residency before: {raw['page_cache_before']['resident_fraction']:.1%}"
            + (
                f"; {raw['repeat_fraction']:.0%} of these reads re-read an expert evicted earlier in "
                "the pass, from the page cache as for the engine"
                if "repeat_fraction" in raw
                else ""
            )
            + ")."
        )
    rand = disk.get("random")
    if rand and raw and raw.get("source") != "shuffled experts":
        lines.append(
            f"- Raw disk, cold, same reads over shuffled experts of the whole model: "
            f"{_gbs(rand['bandwidth_bytes_per_s'])} over {rand['bytes'] / MB:.0f} MB."
        )
    batched = disk.get("batched")
    if batched:
        lines.append(
            f"- Raw disk replaying the engine's miss batches at 25% (each batch waited for, "
            f"{batched['batches']} batches): {_gbs(batched['bandwidth_bytes_per_s'])}."
        )
    quarter = next(
        (
            c
            for c in result.get("configs", [])
            if c.get("budget_percent") == 25.0 and not c.get("prefetch") and c.get("replay")
        ),
        None,
    )
    if quarter:
        whole, dec = quarter["replay"], quarter.get("replay_decode")
        text = (
            f"- Cache policy at 25% ({whole['slots']} slots), same trace: LRU {whole['lru_hit_rate']:.3f} vs "
            f"optimal {whole['optimal_hit_rate']:.3f} over the whole request"
        )
        if dec:
            text += f"; decode steps only: LRU {dec['lru_hit_rate']:.3f} vs optimal {dec['optimal_hit_rate']:.3f}"
        lines.append(text + ".")
    engine = result.get("engine_read_bandwidth_bytes_per_s")
    if engine:
        lines.append(f"- Engine at 25%, prefetch off: {_gbs(engine)} (bytes read / time the decoder waited on reads).")
    cap = result.get("memcap", {})
    if "skipped" in cap:
        lines.append(f"- Memory cap: not run ({cap['skipped']}).")
    elif cap:
        lines.append(
            f"- Memory cap {cap['limit_bytes'] / MB:.0f} MB (model files {cap['model_file_bytes'] / MB:.0f} MB):"
        )
        for mode, label in (
            ("streamed", f"engine at {cap['budget_percent']:g}% budget"),
            ("resident", "mlx-lm resident"),
        ):
            e = cap.get(mode)
            if not e:
                continue
            if e["completed"]:
                lines.append(
                    f"  - {label}: completed, peak RSS {_mb(e['peak_rss_bytes'])} MB "
                    f"({'under' if e['rss_under_limit'] else 'NOT under'} the limit), "
                    f"{_f(e['decode_tokens_per_s'])} tok/s."
                )
            else:
                why = "killed by the OOM killer" if e.get("oom_kills") else f"failed: {e.get('error', '')}"
                lines.append(f"  - {label}: did not complete (exit {e['returncode']}, {why}).")
    return "\n".join(lines)


def _div(a, b):
    return None if a is None or not b else a / b


def _f(value, digits: int = 2) -> str:
    return "-" if value is None or (isinstance(value, float) and not math.isfinite(value)) else f"{value:.{digits}f}"


def _mb(value) -> str:
    if value is None:
        return "-"
    return f"{value / MB:.0f}" if value >= 100 * MB else f"{value / MB:.2g}"


def _gbs(value) -> str:
    return "-" if not value else f"{value / 1e9:.2f} GB/s"
